#if canImport(Glibc)
import Glibc
#endif

/// A file opened read-only, with its size at opening. The caller owns `descriptor` and
/// closes it.
public struct ReadableFile: Sendable {
    public let descriptor: Int32
    public let size: UInt64

    /// `open(O_RDONLY | O_CLOEXEC)` then `fstat`; the descriptor is closed again when
    /// `fstat` fails. Follows symbolic links: for files the caller already trusts.
    public init(_ path: String) throws(SystemError) {
        let descriptor = try SystemCall.checked("open", path: path) { open(path, O_RDONLY | O_CLOEXEC) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            let error = SystemError.current("fstat", path: path)
            close(descriptor)
            throw error
        }
        self.descriptor = descriptor
        size = UInt64(max(0, status.st_size))
    }
}
