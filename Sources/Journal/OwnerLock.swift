import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The single-writer lock: `flock(LOCK_EX)` on `<state_dir>/journal.lock`.
///
/// A separate file, because SQLite's own POSIX locks on the database are dropped when
/// any descriptor of that file in the process is closed. flock locks belong to the open
/// file description, so a second open in the same process is refused too, and the
/// kernel releases the lock when the owner dies: no stale pid guesses.
final class OwnerLock: @unchecked Sendable {
    let path: String
    private let mutex = NSLock()
    private var descriptor: Int32

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    /// Takes the lock without waiting, then records this process's pid in the file.
    static func acquire(path: String, journalPath: String) throws -> OwnerLock {
        // O_CLOEXEC: a child (qemu-img, a libguestfs appliance) must not inherit the
        // descriptor, or it would keep the lock after the daemon died.
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw JournalError.cannotOpen(path: path, message: "cannot open lock file: \(errnoText())")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let failure = errno
            let holder = readPID(descriptor: descriptor)
            close(descriptor)
            if failure == EWOULDBLOCK || failure == EAGAIN {
                throw JournalError.locked(path: journalPath, holderPID: holder)
            }
            throw JournalError.cannotOpen(path: path, message: "cannot lock: \(String(cString: strerror(failure)))")
        }
        // Only the holder writes the pid, and only after it holds the lock, so a
        // refused writer never clobbers the owner's pid.
        let pidLine = Array("\(getpid())\n".utf8)
        let truncated = ftruncate(descriptor, 0) == 0
        let written = pidLine.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        guard truncated, written == pidLine.count else {
            let message = errnoText()
            close(descriptor)
            throw JournalError.cannotOpen(path: path, message: "cannot write pid to lock file: \(message)")
        }
        return OwnerLock(path: path, descriptor: descriptor)
    }

    /// Releases the lock; safe to call more than once.
    func release() {
        mutex.lock()
        defer { mutex.unlock() }
        guard descriptor >= 0 else { return }
        // Leave no pid behind that could be mistaken for a live owner.
        _ = ftruncate(descriptor, 0)
        // Unlocked explicitly: close alone would keep the lock while a child forked by
        // another thread still holds a copy of the descriptor (until its exec closes it),
        // and a reopen right after close was refused as "in use".
        _ = flock(descriptor, LOCK_UN)
        close(descriptor)
        descriptor = -1
    }

    deinit {
        release()
    }

    private static func readPID(descriptor: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        let text = String(decoding: buffer[0..<count], as: UTF8.self)
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

func errnoText() -> String {
    String(cString: strerror(errno))
}
