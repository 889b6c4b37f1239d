import Foundation
import Testing

/// A real libvirtd for one test, reached at `qemu:///system`. When one already answers
/// (a host where libvirt runs) it is used and left running; otherwise the test starts
/// `/usr/sbin/libvirtd --daemon` with its own pid file and stops it when done.
final class LibvirtDaemon {
    static let uri = "qemu:///system"
    static let binary = "/usr/sbin/libvirtd"
    /// As root, a libvirt client that finds no daemon spawns `libvirtd --timeout 120` itself;
    /// that one would race the daemon the test starts, so clients here never spawn.
    static let clientEnvironment = ["LIBVIRT_AUTOSTART": "0"]
    private let startedPID: Int32?

    static var canRun: Bool { getuid() == 0 && FileManager.default.isExecutableFile(atPath: binary) }

    init(scratch: Scratch) throws {
        if Self.answers() {
            startedPID = nil
            return
        }
        let pidFile = scratch.path("libvirtd.pid")
        // Through a shell that points the daemon's stdio at /dev/null: the daemon would
        // otherwise hold the test's pipes open for as long as it runs.
        try sh(["sh", "-c", "exec \"$0\" --daemon --pid-file \"$1\" </dev/null >/dev/null 2>&1", Self.binary, pidFile])
        var pid: Int32?
        for _ in 0..<100 {
            if pid == nil, let text = try? String(contentsOfFile: pidFile, encoding: .utf8) {
                pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
            }
            if pid != nil && Self.answers() { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        guard let pid, Self.answers() else { throw FixtureError("libvirtd did not come up at \(Self.uri)") }
        startedPID = pid
    }

    deinit {
        guard let pid = startedPID else { return }
        kill(pid, SIGTERM)
        for _ in 0..<150 where kill(pid, 0) == 0 { Thread.sleep(forTimeInterval: 0.1) }
        if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
    }

    private static func answers() -> Bool {
        (try? sh(["virsh", "-c", uri, "version"], environment: clientEnvironment, allowFailure: true))?.status == 0
    }
}

/// `virsh -c qemu:///system …`, for checks and clean-up.
enum VirshCLI {
    @discardableResult
    static func run(_ arguments: [String], allowFailure: Bool = false) throws -> (status: Int32, out: String, err: String) {
        try sh(["virsh", "-q", "-c", LibvirtDaemon.uri] + arguments, environment: LibvirtDaemon.clientEnvironment,
               allowFailure: allowFailure)
    }

    /// `Key: value` lines of `dominfo` as a dictionary.
    static func dominfo(_ name: String) throws -> [String: String] {
        var fields: [String: String] = [:]
        for line in try run(["dominfo", "--domain", name]).out.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return fields
    }

    /// Names of every defined domain.
    static func domainNames() throws -> [String] {
        try run(["list", "--all", "--name"]).out.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// Rows of a `domblklist --details` or `domiflist` table, split on blanks.
    static func rows(_ arguments: [String]) throws -> [[String]] {
        try run(arguments).out.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
    }

    static func removeDomain(_ name: String) {
        _ = try? run(["undefine", "--nvram", "--domain", name], allowFailure: true)
    }

    /// A directory pool in `directory`, started.
    static func makePool(_ name: String, directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try run(["pool-define-as", "--name", name, "--type", "dir", "--target", directory])
        try run(["pool-start", "--pool", name])
    }

    static func removePool(_ name: String) {
        if let volumes = try? run(["vol-list", "--pool", name], allowFailure: true), volumes.status == 0 {
            for line in volumes.out.split(separator: "\n") {
                if let volume = line.split(separator: " ").first {
                    _ = try? run(["vol-delete", "--pool", name, "--vol", String(volume)], allowFailure: true)
                }
            }
        }
        _ = try? run(["pool-destroy", "--pool", name], allowFailure: true)
        _ = try? run(["pool-undefine", "--pool", name], allowFailure: true)
    }

    static func volumeNames(_ pool: String) throws -> [String] {
        try run(["vol-list", "--pool", pool]).out.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) }
    }

    /// A persistent, inactive isolated network (a domain can be defined on it while it is down).
    static func makeNetwork(_ name: String, scratch: Scratch) throws {
        let xml = scratch.path("\(name).xml")
        try "<network><name>\(name)</name></network>\n".write(toFile: xml, atomically: true, encoding: .utf8)
        try run(["net-define", "--file", xml])
    }

    static func removeNetwork(_ name: String) {
        _ = try? run(["net-undefine", "--network", name], allowFailure: true)
    }
}

/// `libvirt.json` as the register stage writes it.
struct RegistrationFile: Decodable {
    struct Volume: Decodable {
        var pool: String
        var name: String
        var path: String
        var importedFrom: String
    }
    var uri: String
    var domain: String
    var uuid: String
    var autostart: Bool
    var network: String?
    var bridge: String?
    var volumes: [Volume]

    static func read(in directory: String) throws -> RegistrationFile {
        try JSONDecoder().decode(RegistrationFile.self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/libvirt.json")))
    }
}
