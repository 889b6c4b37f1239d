import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// The one wrapper for C calls that return -1 and set `errno` on failure.
///
/// Where swift-system has the call (`FileDescriptor.open`, `writeAll`, `read`), use it: it
/// retries on EINTR itself. This covers the calls it lacks (`fsync`, `rename`, `inotify_*`…).
public enum SystemCall {
    /// Runs `call` again while it fails with EINTR (a signal arrived before it could finish),
    /// and returns its first other result; `errno` is still set when that result is -1.
    @discardableResult
    public static func retryingOnInterrupt<Value: FixedWidthInteger>(_ call: () -> Value) -> Value {
        while true {
            let result = call()
            if result == -1 && Glibc.errno == EINTR { continue }
            return result
        }
    }

    /// Runs `call` (again while interrupted, with `retryOnInterrupt`) and throws a
    /// `SystemError` naming `operation` and `path` when it fails.
    ///
    /// `retryOnInterrupt: false` is for calls whose effect may already have happened when
    /// they report EINTR (a repeated `link` would then fail with EEXIST).
    @discardableResult
    public static func checked<Value: FixedWidthInteger>(
        _ operation: String, path: String, destination: String? = nil, retryOnInterrupt: Bool = true,
        _ call: () -> Value
    ) throws(SystemError) -> Value {
        let result = retryOnInterrupt ? retryingOnInterrupt(call) : call()
        guard result == -1 else { return result }
        throw SystemError.current(operation, path: path, destination: destination)
    }
}
