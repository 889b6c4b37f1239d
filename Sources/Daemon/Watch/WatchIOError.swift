import Glibc

/// A system call on a queue file failed; says which file, which call and why.
public struct WatchIOError: Error, CustomStringConvertible, Sendable, Equatable {
    public var path: String
    /// The call that failed, as in its man page (`rename`, `fsync`, `inotify_add_watch`…).
    public var operation: String
    public var errno: Int32

    public init(path: String, operation: String, errno: Int32) {
        self.path = path
        self.operation = operation
        self.errno = errno
    }

    public var description: String {
        "\(path): \(operation) failed: \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// Runs a call that returns -1 and sets errno on failure, retrying while it was interrupted.
@discardableResult
func retryingInterrupted(_ call: () -> Int32) -> Int32 {
    while true {
        let result = call()
        if result == -1 && errno == EINTR { continue }
        return result
    }
}

/// Same as `retryingInterrupted` for calls returning a byte count.
func retryingInterrupted(_ call: () -> Int) -> Int {
    while true {
        let result = call()
        if result == -1 && errno == EINTR { continue }
        return result
    }
}
