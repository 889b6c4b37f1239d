import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Writing whole files so that they survive a power loss.
public enum DurableWrite {
    /// Writes `bytes` to `path` (created or truncated, mode 0644) and fsyncs it. The name
    /// itself is durable only once the parent directory is fsynced (`FileSync.directory`).
    public static func write(_ bytes: some Sequence<UInt8>, to path: String,
                             fsync: FsyncMode = .performed) throws(SystemError) {
        let descriptor = try open(path, options: [.create, .truncate, .closeOnExec])
        try fill(descriptor, path: path, with: bytes, fsync: fsync)
    }

    /// Replaces `path` with `bytes` atomically: a hidden temporary beside it, written, fsynced,
    /// renamed over `path`, then the directory fsynced. Readers see the old or the new file
    /// whole, and a failure leaves no temporary behind.
    public static func replace(_ path: String, with bytes: some Sequence<UInt8>) throws(SystemError) {
        let directory = PathText.parent(of: path)
        // The name is cut so the temporary fits NAME_MAX even beside a 255-byte final name.
        let stem = PathText.prefix(of: PathText.lastComponent(of: path), fittingBytes: 200)
        let temporary = "\(directory)/.\(stem).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let descriptor = try open(temporary, options: [.create, .exclusiveCreate, .closeOnExec])
        do {
            try fill(descriptor, path: temporary, with: bytes, fsync: .performed)
            try Rename.replacing(temporary, to: path)
        } catch {
            unlink(temporary)
            throw error
        }
        try FileSync.directory(directory)
    }

    private static func open(_ path: String, options: FileDescriptor.OpenOptions) throws(SystemError) -> FileDescriptor {
        do {
            return try FileDescriptor.open(FilePath(path), .writeOnly, options: options,
                                           permissions: [.ownerReadWrite, .groupRead, .otherRead])
        } catch {
            throw SystemError.wrapping(error, "open", path: path)
        }
    }

    /// Writes, fsyncs and closes `descriptor`: closed on every path, and a failed close is
    /// reported, since it can carry a deferred write error (NFS).
    private static func fill(_ descriptor: FileDescriptor, path: String, with bytes: some Sequence<UInt8>,
                             fsync: FsyncMode) throws(SystemError) {
        do {
            _ = try descriptor.writeAll(bytes)
        } catch {
            try? descriptor.close()
            throw SystemError.wrapping(error, "write", path: path)
        }
        do {
            try FileSync.descriptor(descriptor, path: path, mode: fsync)
        } catch {
            try? descriptor.close()
            throw error
        }
        do {
            try descriptor.close()
        } catch {
            throw SystemError.wrapping(error, "close", path: path)
        }
    }
}
