import Foundation
import SystemSupport

/// The durable-write primitives every output goes through, as Stages uses them: the
/// `SystemSupport` helpers on URLs, with failures as `StageError` (`.noSpace` for a full
/// filesystem, else `.ioFailed`).
///
/// The runner's protocol for a stage output is: write `name.partial`, ``fsync(_:)``,
/// ``renameReplacing(from:to:)``, ``fsyncDirectory(_:)`` of the parent (or ``commit(partial:to:)``
/// which does the three). Publishing uses ``renameNoReplace(from:to:)`` so that an
/// existing directory is never overwritten.
public enum DurableFile {
    /// Flushes a file's data and metadata to stable storage.
    public static func fsync(_ url: URL) throws {
        try mapped { () throws(SystemError) in try FileSync.file(url.path, mode: outputFsync) }
    }

    /// Flushes a directory, which makes the names created, renamed or removed in it durable.
    public static func fsyncDirectory(_ url: URL) throws {
        try mapped { () throws(SystemError) in try FileSync.directory(url.path, mode: outputFsync) }
    }

    /// Writes `data` to `url` (created or truncated, mode 0644) and fsyncs it.
    /// The name itself is not durable until the parent directory is fsynced.
    public static func write(_ data: Data, to url: URL) throws {
        try mapped { () throws(SystemError) in try DurableWrite.write(data, to: url.path, fsync: outputFsync) }
    }

    /// Renames `source` to `destination` unless `destination` exists (see `Rename.withoutReplacing`).
    ///
    /// - Returns: `true` when renamed; `false` when `destination` already exists, in
    ///   which case nothing changed.
    public static func renameNoReplace(from source: URL, to destination: URL) throws -> Bool {
        try mapped { () throws(SystemError) in try Rename.withoutReplacing(source.path, to: destination.path) }
    }

    /// Atomically swaps two existing paths.
    ///
    /// - Returns: `false` when the filesystem or kernel does not support exchanging, in
    ///   which case nothing changed.
    public static func renameExchange(_ first: URL, _ second: URL) throws -> Bool {
        try mapped { () throws(SystemError) in try Rename.exchanging(first.path, with: second.path) }
    }

    /// rename(2): atomically replaces `destination` if it exists.
    public static func renameReplacing(from source: URL, to destination: URL) throws {
        try mapped { () throws(SystemError) in try Rename.replacing(source.path, to: destination.path) }
    }

    /// The whole stage-output protocol for one file: fsync `partial`, rename it to
    /// `final` (replacing a leftover of an earlier attempt) and fsync the parent directory.
    public static func commit(partial: URL, to final: URL) throws {
        try fsync(partial)
        try renameReplacing(from: partial, to: final)
        try fsyncDirectory(final.deletingLastPathComponent())
    }

    // MARK: - Internals

    /// Whether outputs are fsynced. The negative-control build of the power-loss test
    /// (`swift build -Xswiftc -DHYPER2KVM_UNSAFE_SKIP_OUTPUT_FSYNC`, see scripts/powerloss)
    /// skips it, so that the test can show it notices outputs lost with the page cache.
    /// The journal's and the queue's own syncs are not affected. Never set that flag for a real build.
    private static let outputFsync: FsyncMode = {
        #if HYPER2KVM_UNSAFE_SKIP_OUTPUT_FSYNC
        return .skipped
        #else
        return .performed
        #endif
    }()

    private static func mapped<Value>(_ body: () throws(SystemError) -> Value) throws(StageError) -> Value {
        do {
            return try body()
        } catch {
            throw StageError(error)
        }
    }

    static func failure(_ call: String, _ url: URL, _ error: Int32, to destination: URL? = nil) -> StageError {
        StageError(SystemError(operation: call, path: url.path, destination: destination?.path, errno: error))
    }
}
