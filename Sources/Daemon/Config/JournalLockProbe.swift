import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Looks at `<state_dir>/journal.lock` without touching its lock: taking even a shared
/// flock for a moment could make a daemon starting at that instant refuse to run. The
/// kernel's table of held locks (/proc/locks) says whether anyone holds it; the file says
/// which pid took it.
public enum JournalLockProbe {
    public static func activity(stateDirectory: String, locksTable: String = "/proc/locks") -> InstanceActivity {
        let lockPath = stateDirectory + "/journal.lock"
        var info = stat()
        guard stat(lockPath, &info) == 0 else {
            return errno == ENOENT ? .stopped : .unknown("\(lockPath): \(String(cString: strerror(errno)))")
        }
        guard let table = try? String(contentsOfFile: locksTable, encoding: .utf8) else {
            return .unknown("\(locksTable) is not readable")
        }
        let recordedPID = (try? String(contentsOfFile: lockPath, encoding: .utf8))
            .flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        let inode = UInt64(info.st_ino)
        if let recordedPID, holdsFlock(pid: recordedPID, onInode: inode) { return .running(pid: recordedPID) }
        guard isFlockHeld(inode: inode, table: table) || isFlockHeldOnRereading(inode: inode, locksTable: locksTable) else {
            return .stopped
        }
        return .running(pid: recordedPID)
    }

    /// The exact answer for the pid the lock file names: its descriptors of the file and the
    /// `lock:` lines the kernel lists in their fdinfo. Needs the right to read that process's
    /// /proc entries (the same user, or root); otherwise /proc/locks decides.
    static func holdsFlock(pid: Int32, onInode inode: UInt64) -> Bool {
        guard pid > 0, let descriptors = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else {
            return false
        }
        return descriptors.contains { fd in
            var info = stat()
            guard stat("/proc/\(pid)/fd/\(fd)", &info) == 0, UInt64(info.st_ino) == inode,
                  let fdinfo = try? String(contentsOfFile: "/proc/\(pid)/fdinfo/\(fd)", encoding: .utf8) else { return false }
            return fdinfo.split(separator: "\n").contains { $0.hasPrefix("lock:") && $0.contains(" FLOCK ") && !$0.contains("->") }
        }
    }

    /// /proc/locks comes a page per read(), and the kernel finds the next page by counting
    /// entries: a lock released between two reads shifts the rest, so one entry is skipped.
    /// On a host where qemu processes take and drop image locks all the time, a held lock
    /// can be missed that way. A skip can only hide an entry, never invent one,
    /// so a few more reads settle it.
    private static func isFlockHeldOnRereading(inode: UInt64, locksTable: String) -> Bool {
        (0..<3).contains { _ in
            (try? String(contentsOfFile: locksTable, encoding: .utf8)).map { isFlockHeld(inode: inode, table: $0) } ?? false
        }
    }

    /// Matches on the inode alone: under overlayfs the lock is recorded against the
    /// upper file's device, which stat() through the overlay does not report.
    public static func isFlockHeld(inode: UInt64, table: String) -> Bool {
        table.split(separator: "\n").contains { line in
            // "1: FLOCK  ADVISORY  WRITE 1234 fd:00:5678 0 EOF"; blocked waiters start with "->".
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, fields[1] == "FLOCK", fields[2] != "->" else { return false }
            return fields[5].split(separator: ":").last.flatMap { UInt64($0) } == inode
        }
    }
}
