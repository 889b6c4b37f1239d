import Foundation
import Testing
import TestSupport

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

    static var canRun: Bool { HostCapabilities.isRoot && FileManager.default.isExecutableFile(atPath: binary) }

    init(scratch: Scratch) throws {
        if Self.answers() {
            startedPID = nil
            return
        }
        let pidFile = scratch.path("libvirtd.pid")
        let status = try DetachedLaunch.run([Self.binary, "--daemon", "--pid-file", pidFile])
        guard status == 0 else { throw FixtureError("\(Self.binary) --daemon exited with status \(status)") }
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
        (try? shBlocking(["virsh", "-c", uri, "version"], environment: clientEnvironment, allowFailure: true))?.status == 0
    }
}

/// Starts a program that daemonizes, as if from a clean shell. Foundation's `Process` (and
/// so `sh`) would hand it the test runner's signal mask, in which SIGTERM is blocked (the
/// daemon could then never be stopped), and a descriptor `Process` watches to notice the
/// exit (a daemon holding it makes the launch look endless).
enum DetachedLaunch {
    /// Runs `arguments` with stdio on /dev/null, no other descriptors, default signal
    /// mask and dispositions; returns its exit status once it exits.
    static func run(_ arguments: [String]) throws -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        // glibc ≥ 2.34 has closefrom as a spawn action; Swift's Glibc module does not export it.
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else {
            throw FixtureError("glibc without posix_spawn_file_actions_addclosefrom_np")
        }
        _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let cArguments = arguments.map { strdup($0) } + [nil]
        defer { cArguments.forEach { free($0) } }
        var pid: pid_t = 0
        let error = posix_spawn(&pid, arguments[0], &actions, &attributes, cArguments, environ)
        guard error == 0 else { throw FixtureError("cannot start \(arguments[0]): \(String(cString: strerror(error)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }
}

/// `virsh -c qemu:///system …`, for checks and clean-up.
enum VirshCLI {
    @discardableResult
    static func run(_ arguments: [String], allowFailure: Bool = false) throws -> (status: Int32, out: String, err: String) {
        try shBlocking(["virsh", "-q", "-c", LibvirtDaemon.uri] + arguments, environment: LibvirtDaemon.clientEnvironment,
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
