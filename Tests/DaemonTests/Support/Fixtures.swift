import Foundation
import Testing
import Stages

/// A temporary directory removed when the test ends.
final class Scratch {
    let url: URL

    init(_ label: String) throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("h2k-\(label)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
}

/// Runs a host tool; fails the test with its stderr when it fails.
///
/// The wait happens on a thread of its own: the tests share one process whose cooperative
/// pool has as many threads as the host has cores (2 here). A boot test or a real-guest
/// conversion blocking two of them for minutes stalled every other test's timers, and
/// tests with a time limit failed without having done anything wrong.
@discardableResult
func sh(_ arguments: [String], environment: [String: String] = [:], allowFailure: Bool = false) async throws -> (status: Int32, out: String, err: String) {
    try await BlockingWork.run("h2k-test-sh") { try shBlocking(arguments, environment: environment, allowFailure: allowFailure) }
}

/// Carries a value that is not Sendable to a `BlockingWork` thread and back. Only for test
/// values that one task hands over and waits for, never touched by two threads at once.
struct Unchecked<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// `sh` for the few synchronous callers (test setup that cannot be async); never for a long tool.
@discardableResult
func shBlocking(_ arguments: [String], environment: [String: String] = [:], allowFailure: Bool = false) throws -> (status: Int32, out: String, err: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let result = (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    if !allowFailure && result.0 != 0 {
        throw FixtureError("\(arguments.joined(separator: " ")) failed (\(result.0)): \(result.2)")
    }
    return result
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Small real disk images: an ext4 filesystem holding random data, in every input format.
enum TestDisks {
    /// A 48 MiB raw disk: ext4 made from a directory with 8 MiB of random bytes.
    static func makeRaw(at path: String) async throws {
        let content = path + ".content"
        try FileManager.default.createDirectory(atPath: content + "/etc", withIntermediateDirectories: true)
        try "hello from hyper2kvm tests\n".write(toFile: content + "/etc/motd", atomically: true, encoding: .utf8)
        try await sh(["dd", "if=/dev/urandom", "of=\(content)/random.bin", "bs=1M", "count=8", "status=none"])
        try await sh(["truncate", "-s", "48M", path])
        try await sh(["mkfs.ext4", "-q", "-F", "-d", content, path])
        try FileManager.default.removeItem(atPath: content)
    }

    /// qemu-img options for each variant: (extension, qemu format, extra options).
    static let variants: [(name: String, ext: String, format: String, options: [String])] = [
        ("vmdk-sparse", "vmdk", "vmdk", []),
        ("vmdk-stream", "vmdk", "vmdk", ["-o", "subformat=streamOptimized"]),
        ("vhd", "vhd", "vpc", []),
        ("vhdx", "vhdx", "vhdx", []),
        ("raw", "raw", "raw", []),
        ("img", "img", "raw", []),
        ("qcow2", "qcow2", "qcow2", []),
    ]

    static func convert(raw: String, to path: String, format: String, options: [String]) async throws {
        try await sh(["qemu-img", "convert", "-f", "raw", "-O", format] + options + [raw, path])
    }

    /// A fresh raw disk in `scratch` and a copy of it as a VMDK named `name`: (raw, source).
    static func makeSource(in scratch: Scratch, named name: String = "vm.vmdk", options: [String] = []) async throws -> (raw: String, source: String) {
        let raw = scratch.path("base.raw")
        try await makeRaw(at: raw)
        let source = scratch.path(name)
        try await convert(raw: raw, to: source, format: "vmdk", options: options)
        return (raw, source)
    }

    static func sha256(_ path: String) async throws -> String {
        String(try await sh(["sha256sum", path]).out.prefix(64))
    }
}

/// The built `hyper2kvm` binary (swift build --build-tests builds it beside the tests).
enum ProductBinary {
    static var path: String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        // On Linux the test bundle is an executable whose bundleURL is its build directory.
        let candidates = [
            Bundle.main.bundleURL.appendingPathComponent("hyper2kvm").path,
            Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("hyper2kvm").path,
            root.appendingPathComponent(".build/debug/hyper2kvm").path,
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[1]
    }
}

/// What the tests that run the real guest tools share: the repository (for scripts/) and
/// the libguestfs settings for this machine, where KVM hangs (tests set TCG; the product never does).
enum RealGuestTesting {
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Waits until the daemon under `base` has published `vm` (its SHA256SUMS exists) and
    /// archived the queued file `queued`, or has given up on it (its `.error.json` exists),
    /// at most `seconds`.
    /// Returns the published directory; the caller checks which of the two happened.
    static func awaitPublication(base: String, vm: String, queued: String, seconds: TimeInterval) async throws -> String {
        let published = base + "/output/" + vm
        let deadline = Date().addingTimeInterval(seconds)
        // The source is archived after the outputs are published and `published` is committed,
        // so the outputs alone do not mean the job is done.
        let done = {
            FileManager.default.fileExists(atPath: published + "/SHA256SUMS")
                && !FileManager.default.fileExists(atPath: base + "/queue/" + queued)
        }
        while Date() < deadline && !done() {
            if FileManager.default.fileExists(atPath: base + "/queue/.errors/\(queued).error.json") { break }
            try await Task.sleep(for: .seconds(2))
        }
        return published
    }

    static var libguestfsEnvironment: [String: String] {
        var environment = ["LIBGUESTFS_BACKEND": "direct"]
        if ProcessInfo.processInfo.environment["HYPER2KVM_TEST_KVM"] != "1" { environment["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg" }
        return environment
    }
}
