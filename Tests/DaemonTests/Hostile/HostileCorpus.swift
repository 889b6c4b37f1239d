import Foundation
#if canImport(Glibc)
import Glibc
import TestSupport
#endif

/// One file an attacker drops, as `scripts/hostile-corpus` lists it in `cases.json`.
struct HostileCase: Decodable, Sendable {
    enum Expectation: String, Decodable, Sendable {
        case refused, converted, any
    }

    let id: String
    /// leak, trap, wedge, fill, tie-up, minor, good.
    let `class`: String
    /// Relative to the corpus directory.
    let file: String
    let expect: Expectation
    let why: String
}

/// The generated corpus and the host it attacks: a working directory holding a planted
/// secret (a random marker repeated over 128 KiB, so it spans clusters and sectors), and a
/// listener on 127.0.0.1 that accepts connections and never answers.
final class HostileHost {
    let scratch: Scratch
    /// The converter runs here; relative names in the corpus resolve against it.
    let workingDirectory: String
    /// `state/journal.sqlite` under the working directory, as a daemon's journal would be.
    let secretPath: String
    let marker: Data
    let corpusDirectory: String
    let cases: [HostileCase]
    private let listener: SilentListener

    static let secretBytes = 128 * 1024

    init() async throws {
        scratch = try Scratch("hostile")
        workingDirectory = scratch.path("host")
        secretPath = workingDirectory + "/state/journal.sqlite"
        corpusDirectory = scratch.path("corpus")
        try FileManager.default.createDirectory(atPath: workingDirectory + "/state", withIntermediateDirectories: true)
        let markerText = "H2K-SECRET-\(UUID().uuidString)-\(UInt64.random(in: 0...UInt64.max))"
        marker = Data(markerText.utf8)
        var secret = Data()
        while secret.count < Self.secretBytes { secret += Data((markerText + "\n").utf8) }
        try secret.prefix(Self.secretBytes).write(to: URL(fileURLWithPath: secretPath))

        listener = try SilentListener()
        let script = RealGuestTesting.repositoryRoot.appendingPathComponent("scripts/hostile-corpus").path
        try await sh(["python3", script, "--out", corpusDirectory, "--secret", secretPath, "--cwd", workingDirectory,
                "--nbd-port", String(listener.port)])
        let listing = try Data(contentsOf: URL(fileURLWithPath: corpusDirectory + "/cases.json"))
        cases = try JSONDecoder().decode(Listing.self, from: listing).cases
    }

    private struct Listing: Decodable {
        let cases: [HostileCase]
    }

    func path(of hostileCase: HostileCase) -> String { corpusDirectory + "/" + hostileCase.file }
}

/// A TCP socket on 127.0.0.1 that is listening but never accepts or answers: the kernel
/// completes the handshake, so a client connects and then waits for a greeting forever.
final class SilentListener {
    let port: UInt16
    private let descriptor: Int32

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw FixtureError("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(descriptor, 128) == 0 else {
            close(descriptor)
            throw FixtureError("bind/listen on 127.0.0.1: \(String(cString: strerror(errno)))")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        port = UInt16(bigEndian: address.sin_port)
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }
}
