import Foundation
import Synchronization

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

    /// As above with the space given (the decision alone, for tests). `held`: bytes other
    /// writers of this process are about to write there (``SpaceReservations``).
    public static func require(_ need: SpaceNeed, on space: FileSystemSpace, held: UInt64 = 0,
                               for what: String, file: String?) throws {
        var left = space
        left.available = space.available > held ? space.available - held : 0
        switch need.verdict(on: left) {
        case .fits:
            return
        case .waitForSpace:
            let others = held > 0 ? ", of which \(ByteCount(held)) is about to be written by other conversions" : ""
            var error = StageError(.noSpace, file: file,
                                   "\(what) needs \(ByteCount(need.bytes)) on the filesystem of \(need.directory), "
                                       + "\(ByteCount(space.available)) free\(others)")
            error.spaceNeed = need
            throw error
        case .neverFits:
            throw StageError(.badInput, file: file,
                             "\(what) needs \(ByteCount(need.bytes)), more than the whole filesystem of \(need.directory) "
                                 + "can hold (\(ByteCount(space.capacity))): it can never fit there")
        }
    }
}

/// Estimates of this process's writes in progress, per filesystem. Checked one after the
/// other, two jobs would otherwise both count the same free bytes, and the second would
/// fill the disk half-way through its copy. An estimate stays held for the whole copy,
/// though the bytes it stands for are being written meanwhile: that errs towards waiting.
public final class SpaceReservations: Sendable {
    public static let shared = SpaceReservations()
    /// Bytes held per filesystem (`st_dev`).
    private let held = Mutex<[UInt64: UInt64]>([:])

    public init() {}

    /// One held estimate; give it back with ``release()`` when the write is done or failed.
    public final class Reservation: Sendable {
        fileprivate let device: UInt64
        fileprivate let bytes: UInt64
        private let owner: SpaceReservations
        private let released = Atomic<Bool>(false)

        fileprivate init(device: UInt64, bytes: UInt64, owner: SpaceReservations) {
            self.device = device
            self.bytes = bytes
            self.owner = owner
        }

        public func release() {
            guard !released.exchange(true, ordering: .relaxed) else { return }
            owner.give(back: self)
        }
    }

    /// Checks `need` against the free space less what others hold (as ``SpaceCheck/require(_:for:file:)``
    /// does) and holds it until released.
    public func reserve(_ need: SpaceNeed, for what: String, file: String?) throws -> Reservation {
        var status = stat()
        guard stat(need.directory, &status) == 0, let space = FileSystemSpace.of(need.directory) else {
            throw StageError(.ioFailed, file: need.directory, "cannot read the free space: \(String(cString: strerror(errno)))")
        }
        let device = UInt64(status.st_dev)
        return try held.withLock { held in
            try SpaceCheck.require(need, on: space, held: held[device] ?? 0, for: what, file: file)
            held[device] = (held[device] ?? 0).saturatingAdd(need.bytes)
            return Reservation(device: device, bytes: need.bytes, owner: self)
        }
    }

    /// Bytes held on the filesystem of `directory`.
    public func heldBytes(at directory: String) -> UInt64 {
        var status = stat()
        guard stat(directory, &status) == 0 else { return 0 }
        return held.withLock { $0[UInt64(status.st_dev)] ?? 0 }
    }

    private func give(back reservation: Reservation) {
        held.withLock { held in
            let now = held[reservation.device] ?? 0
            let left = now > reservation.bytes ? now - reservation.bytes : 0
            held[reservation.device] = left == 0 ? nil : left
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
