import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// A system call on a file failed: which call, on which path (and towards which destination,
/// for a rename or a link), and the errno it set.
public struct SystemError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The call that failed, as in its man page (`open`, `fsync`, `rename`, `inotify_add_watch`…).
    public var operation: String
    public var path: String
    /// The second path of a two-path call (`rename`, `link`), else nil.
    public var destination: String?
    public var errno: Errno

    public init(operation: String, path: String, destination: String? = nil, errno: Errno) {
        self.operation = operation
        self.path = path
        self.destination = destination
        self.errno = errno
    }

    /// The same from a raw errno value.
    public init(operation: String, path: String, destination: String? = nil, errno code: Int32) {
        self.init(operation: operation, path: path, destination: destination, errno: Errno(rawValue: code))
    }

    /// From the calling thread's `errno`, right after the call that failed.
    public static func current(_ operation: String, path: String, destination: String? = nil) -> SystemError {
        SystemError(operation: operation, path: path, destination: destination, errno: Glibc.errno)
    }

    /// From an error thrown by swift-system (always an `Errno`; anything else is reported as EIO).
    static func wrapping(_ error: any Error, _ operation: String, path: String) -> SystemError {
        SystemError(operation: operation, path: path, errno: (error as? Errno) ?? .ioError)
    }

    /// `strerror(3)` of the errno: "No such file or directory".
    public var reason: String { String(cString: strerror(errno.rawValue)) }

    /// The call and its destination: "rename to /out/web01".
    public var call: String { destination.map { "\(operation) to \($0)" } ?? operation }

    /// The filesystem is full or the quota is used up: not a fault of the file or the program.
    public var isOutOfSpace: Bool { errno == .noSpace || errno == .diskQuotaExceeded }

    /// "/queue/a.ova: rename to /queue/.processed/a.ova failed: File exists (errno 17)".
    public var description: String {
        "\(path): \(call) failed: \(reason) (errno \(errno.rawValue))"
    }
}
