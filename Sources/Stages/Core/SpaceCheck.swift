import Foundation

/// Bytes a stage is about to write on the filesystem holding `directory`: carried by a
/// `.noSpace` error so the daemon waits until this much is free, not for a guess.
public struct SpaceNeed: Sendable, Equatable {
    public var bytes: UInt64
    /// A directory on the filesystem that must hold the bytes (the job's work directory…).
    public var directory: String

    public init(bytes: UInt64, directory: String) {
        self.bytes = bytes
        self.directory = directory
    }

    public enum Verdict: Sendable, Equatable {
        case fits
        /// Not now; it fits once others free space.
        case waitForSpace
        /// More than the whole filesystem could ever give this process.
        case neverFits
    }

    public func verdict(on space: FileSystemSpace) -> Verdict {
        if bytes <= space.available { return .fits }
        return bytes <= space.capacity ? .waitForSpace : .neverFits
    }
}

/// What `statvfs` says about the filesystem holding a path, in bytes, as an unprivileged
/// writer sees it (root's reserved blocks are neither free nor part of the capacity, unless
/// we are root: then `f_bavail == f_bfree`).
public struct FileSystemSpace: Sendable, Equatable {
    /// Free now.
    public var available: UInt64
    /// The most that could ever be free: everything but root's reserve.
    public var capacity: UInt64

    public init(available: UInt64, capacity: UInt64) {
        self.available = available
        self.capacity = capacity
    }

    public static func of(_ path: String) -> FileSystemSpace? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        let block = UInt64(info.f_frsize)
        let rootOnly = info.f_bfree >= info.f_bavail ? UInt64(info.f_bfree - info.f_bavail) : 0
        let usable = UInt64(info.f_blocks) >= rootOnly ? UInt64(info.f_blocks) - rootOnly : 0
        let (available, overflowA) = UInt64(info.f_bavail).multipliedReportingOverflow(by: block)
        let (capacity, overflowC) = usable.multipliedReportingOverflow(by: block)
        return FileSystemSpace(available: overflowA ? .max : available, capacity: overflowC ? .max : capacity)
    }
}

/// Checks an estimate against the filesystem before the first byte is written.
public enum SpaceCheck {
    /// Kept free besides any estimate: the journal's WAL, the log, metadata.json, domain.xml
    /// and checksum files are written on the same filesystems, and the daemon must still be
    /// able to record why a job stopped. The same floor the daemon always waited for.
    public static let reserveBytes: UInt64 = 64 << 20

    /// Throws unless `need` fits now.
    ///
    /// - Throws: `StageError(.noSpace)` carrying `need` when it fits once space is freed
    ///   (the daemon waits for exactly that much); `.badInput` when it exceeds the whole
    ///   filesystem, so the job fails at once instead of waiting forever; `.ioFailed` when
    ///   the filesystem cannot be asked.
    /// - Parameters:
    ///   - what: the writing step, for the message ("converting 2 disk(s) to qcow2").
    ///   - file: the input the bytes derive from, named by the error.
    public static func require(_ need: SpaceNeed, for what: String, file: String?) throws {
        guard let space = FileSystemSpace.of(need.directory) else {
            throw StageError(.ioFailed, file: need.directory, "cannot read the free space (statvfs): \(String(cString: strerror(errno)))")
        }
        try require(need, on: space, for: what, file: file)
    }

    /// As above with the space given (the decision alone, for tests).
    public static func require(_ need: SpaceNeed, on space: FileSystemSpace, for what: String, file: String?) throws {
        switch need.verdict(on: space) {
        case .fits:
            return
        case .waitForSpace:
            var error = StageError(.noSpace, file: file,
                                   "\(what) needs \(ByteCount(need.bytes)) on the filesystem of \(need.directory), "
                                       + "\(ByteCount(space.available)) free")
            error.spaceNeed = need
            throw error
        case .neverFits:
            throw StageError(.badInput, file: file,
                             "\(what) needs \(ByteCount(need.bytes)), more than the whole filesystem of \(need.directory) "
                                 + "can hold (\(ByteCount(space.capacity))): it can never fit there")
        }
    }
}

/// A byte count for messages: exact, with a binary-unit reading beside it.
public struct ByteCount: CustomStringConvertible, Sendable {
    public var bytes: UInt64
    public init(_ bytes: UInt64) { self.bytes = bytes }

    public var description: String {
        let units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var value = Double(bytes)
        var unit = -1
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        guard unit >= 0 else { return "\(bytes) bytes" }
        return "\(bytes) bytes (\(String(format: "%.1f", value)) \(units[unit]))"
    }
}

/// Saturating sums for estimates: an input-derived size that overflows becomes `UInt64.max`,
/// which no filesystem holds, so the check fails clearly instead of trapping or wrapping.
extension UInt64 {
    func saturatingAdd(_ other: UInt64) -> UInt64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? .max : sum
    }
}
