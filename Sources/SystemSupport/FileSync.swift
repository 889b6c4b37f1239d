import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Whether a durable-file helper calls fsync(2).
///
/// `.skipped` exists for one build only: the power-loss test's negative control, which
/// compiles out the output fsyncs to show that the test notices outputs lost with the page
/// cache. Nothing else may pass it.
public enum FsyncMode: Sendable, Equatable {
    case performed
    case skipped
}

/// fsync(2) of files and directories: after it returns, a file's bytes (for a directory: the
/// names created, renamed or removed in it) survive a power loss.
///
/// - Important: Only EINTR is retried. After a failed writeback Linux may clear the error and
///   mark the pages clean, so a second `fsync` can succeed without the data being on disk.
///   Every other failure is thrown, and the caller redoes the whole file.
public enum FileSync {
    public static func file(_ path: String, mode: FsyncMode = .performed) throws(SystemError) {
        try synced(path, options: [.closeOnExec], mode: mode)
    }

    public static func directory(_ path: String, mode: FsyncMode = .performed) throws(SystemError) {
        try synced(path, options: [.directory, .closeOnExec], mode: mode)
    }

    /// fsync of a descriptor the caller holds open; `path` names it in the error.
    public static func descriptor(_ descriptor: FileDescriptor, path: String,
                                  mode: FsyncMode = .performed) throws(SystemError) {
        guard mode == .performed else { return }
        try SystemCall.checked("fsync", path: path) { fsync(descriptor.rawValue) }
    }

    private static func synced(_ path: String, options: FileDescriptor.OpenOptions, mode: FsyncMode) throws(SystemError) {
        let descriptor: FileDescriptor
        do {
            descriptor = try FileDescriptor.open(FilePath(path), .readOnly, options: options)
        } catch {
            throw SystemError.wrapping(error, "open", path: path)
        }
        defer { try? descriptor.close() }
        try FileSync.descriptor(descriptor, path: path, mode: mode)
    }
}
