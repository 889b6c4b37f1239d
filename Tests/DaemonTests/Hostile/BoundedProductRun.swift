import Foundation
#if canImport(Glibc)
import Glibc
import TestSupport
#endif

/// One `hyper2kvm` process run as a user would, watched from outside: its exit (or the
/// signal that ended it), its wall time, and the peak disk use of its output directory.
/// Past its deadline it is killed with every process it started (a hang must never hang
/// the test run).
final class BoundedProductRun {
    let label: String
    let directory: String
    let outputDirectory: String
    let deadline: Date
    let started = Date()
    private let pid: pid_t

    private(set) var finished: Outcome?
    private(set) var peakOutputBytes: UInt64 = 0

    enum Outcome: Equatable {
        case exited(Int32)
        case signalled(Int32)
        /// Still running at the deadline; killed by the test.
        case hung
    }

    var elapsed: TimeInterval { (finishedAt ?? Date()).timeIntervalSince(started) }
    private var finishedAt: Date?
    var stdoutPath: String { directory + "/stdout" }
    var stderrPath: String { directory + "/stderr" }

    /// Starts `arguments` in `workingDirectory` with stdout/stderr in files under
    /// `directory`, in a process group of its own, with the default signal mask (the test
    /// runner blocks some signals and a child inherits that).
    init(label: String, arguments: [String], workingDirectory: String, directory: String, outputDirectory: String,
         environment: [String: String], seconds: TimeInterval) throws {
        self.label = label
        self.directory = directory
        self.outputDirectory = outputDirectory
        deadline = Date().addingTimeInterval(seconds)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, directory + "/stdout", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, directory + "/stderr", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        // Swift's Glibc module exports neither addchdir_np nor addclosefrom_np (glibc has both).
        typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        guard let chdirSymbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addchdir_np"),
              let closeSymbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else {
            throw FixtureError("glibc without posix_spawn_file_actions_addchdir_np/addclosefrom_np")
        }
        _ = workingDirectory.withCString { unsafeBitCast(chdirSymbol, to: AddChdir.self)(&actions, $0) }
        _ = unsafeBitCast(closeSymbol, to: CloseFrom.self)(&actions, 3)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        let cArguments = arguments.map { strdup($0) } + [nil]
        defer { cArguments.forEach { free($0) } }
        let merged = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let cEnvironment = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { cEnvironment.forEach { free($0) } }
        var child: pid_t = 0
        let error = posix_spawn(&child, arguments[0], &actions, &attributes, cArguments, cEnvironment)
        guard error == 0 else { throw FixtureError("cannot start \(arguments[0]): \(String(cString: strerror(error)))") }
        pid = child
    }

    /// Checks on the process once: reaps it if it ended, kills it past the deadline, and
    /// samples the output directory's disk use. True once it is finished.
    func poll() -> Bool {
        if finished != nil { return true }
        peakOutputBytes = max(peakOutputBytes, DiskUse.allocatedBytes(under: outputDirectory))
        var status: Int32 = 0
        let reaped = waitpid(pid, &status, WNOHANG)
        if reaped == pid {
            finish(Self.outcome(status))
            return true
        }
        if Date() >= deadline {
            killTree()
            finish(.hung)
            return true
        }
        return false
    }

    private func finish(_ outcome: Outcome) {
        finished = outcome
        finishedAt = Date()
        peakOutputBytes = max(peakOutputBytes, DiskUse.allocatedBytes(under: outputDirectory))
    }

    /// SIGKILL to the group and to every descendant found in /proc (a child may have moved
    /// to a group of its own), collected before anything dies and is re-parented.
    private func killTree() {
        let descendants = ProcessTree.descendants(of: pid)
        kill(-pid, SIGKILL)
        kill(pid, SIGKILL)
        for child in descendants { kill(child, SIGKILL) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }

    static func outcome(_ status: Int32) -> Outcome {
        let signal = status & 0x7F
        return signal == 0 ? .exited((status >> 8) & 0xFF) : .signalled(signal)
    }
}

enum ProcessTree {
    /// Every process whose parent chain leads to `root`, read from /proc/<pid>/stat.
    static func descendants(of root: pid_t) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var children: [pid_t: [pid_t]] = [:]
        for entry in entries {
            guard let pid = pid_t(entry), let stat = ProcessStat(pid) else { continue }
            children[stat.parent, default: []].append(pid)
        }
        var found: [pid_t] = []
        var queue = [root]
        while let next = queue.popLast() {
            for child in children[next] ?? [] where !found.contains(child) {
                found.append(child)
                queue.append(child)
            }
        }
        return found
    }
}

enum DiskUse {
    /// Bytes allocated (st_blocks) by every file under `path`, symlinks not followed.
    static func allocatedBytes(under path: String) -> UInt64 {
        var total: UInt64 = 0
        var status = stat()
        guard lstat(path, &status) == 0 else { return 0 }
        total += UInt64(max(0, status.st_blocks)) * 512
        guard status.st_mode & S_IFMT == S_IFDIR,
              let enumerator = FileManager.default.enumerator(atPath: path) else { return total }
        for case let relative as String in enumerator {
            if lstat(path + "/" + relative, &status) == 0 {
                total += UInt64(max(0, status.st_blocks)) * 512
            }
        }
        return total
    }
}
