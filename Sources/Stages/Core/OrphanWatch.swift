import Foundation

/// A child whose parent died (the daemon was killed) must not go on writing files nobody
/// will use, with an appliance that holds gigabytes: a thread checks once a second whether
/// this process was re-parented, and then kills its own process group (this process, the
/// tools it started and their qemu; `ExternalCommand` made it a group leader).
public enum OrphanWatch {
    public static func start() {
        let parent = getppid()
        let thread = Thread {
            while true {
                sleep(1)
                if getppid() != parent { _ = kill(0, SIGKILL) }
            }
        }
        thread.name = "h2k-orphan-watch"
        thread.start()
    }
}

/// Runs a tool we did not write (virt-v2v) under `hyper2kvm internal supervise`: the tool
/// stays in this process's group, so the daemon's teardown (SIGTERM, grace, SIGKILL to the
/// group) reaches it as before, and `OrphanWatch` kills the group when the daemon itself is
/// killed, which the tool would otherwise outlive.
public enum Supervisor {
    /// Starts `command` (looked up on PATH), waits for it, and returns its exit status; a
    /// tool killed by a signal is reported by dying of the same signal.
    public static func run(_ command: [String]) -> Int32 {
        OrphanWatch.start()
        guard let program = command.first else { return 2 }
        var pid: pid_t = 0
        let arguments = command.map { strdup($0) } + [nil]
        defer { arguments.forEach { free($0) } }
        let spawned = posix_spawnp(&pid, program, nil, nil, arguments, environ)
        guard spawned == 0 else {
            FileHandle.standardError.write(Data("hyper2kvm supervise: cannot start \(program): \(String(cString: strerror(spawned)))\n".utf8))
            return 127
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { return 1 }
        }
        let signal = status & 0x7f
        guard signal != 0 else { return (status >> 8) & 0xff }
        Foundation.signal(signal, SIG_DFL)
        kill(getpid(), signal)
        return 128 + signal
    }
}
