/// What one look at a queue file showed: enough to tell whether it is still changing.
public struct FileObservation: Sendable, Equatable {
    /// `st_dev`/`st_ino`: a different identity means the name now points at another file.
    public var device: UInt64
    public var inode: UInt64
    public var size: UInt64
    /// `st_mtim` in nanoseconds since the epoch. Compared for change only, never with a clock.
    public var modificationNanoseconds: Int64
    /// Some process we can inspect holds the file open for writing (see `OpenWriterScanner`).
    public var hasWriter: Bool

    public init(device: UInt64, inode: UInt64, size: UInt64, modificationNanoseconds: Int64, hasWriter: Bool) {
        self.device = device
        self.inode = inode
        self.size = size
        self.modificationNanoseconds = modificationNanoseconds
        self.hasWriter = hasWriter
    }

    /// Equal content signature: same file, same size, same mtime (writer state aside).
    func sameContent(as other: FileObservation) -> Bool {
        device == other.device && inode == other.inode && size == other.size
            && modificationNanoseconds == other.modificationNanoseconds
    }
}

/// Decides when a file being copied into the queue is complete, however long the copy lasts.
///
/// A pure state machine: it is told what happened (`noteArrival`) and what a look at the file
/// showed (`observe`) with the time of each, and answers when the file is stable or when to
/// look again. It never sleeps, reads files or gives up; `FileStabilitySampler` does the looking.
///
/// A file is **stable** when no process holds it open for writing and its identity, size and
/// mtime have not changed, nor has a writer been seen, for `quietPeriod`. A file renamed into
/// the directory (`.movedIn`) with no writer is stable at the first look: a rename is how a
/// finished file arrives atomically. There is deliberately no timeout: a copy that takes hours
/// stays pending for hours (the Python tool dropped copies slower than 30 s).
///
/// Times are instants of a monotonic clock (`ContinuousClock` in the daemon), so a wall-clock
/// step neither completes nor stalls a copy.
public struct FileStabilityTracker<Instant: InstantProtocol>: Sendable
where Instant.Duration == Duration, Instant: Sendable {
    /// How a file came to our notice.
    public enum Arrival: Sendable, Equatable {
        /// Renamed into the directory (`IN_MOVED_TO`): complete unless still open for writing.
        case movedIn
        /// Created, written or closed after writing: needs the quiet period.
        case written
        /// Found by a directory scan (start-up, overflow rescan): needs the quiet period.
        case discovered
    }

    public enum Verdict: Sendable, Equatable {
        /// Complete: take it.
        case stable
        /// Not yet: look again at `recheckAt` (or earlier, on the next event for the file).
        case pending(recheckAt: Instant)
        /// The name no longer exists; the file is no longer tracked.
        case gone
    }

    private struct Record: Sendable {
        var arrival: Arrival
        var lastObservation: FileObservation?
        /// When content last changed or a writer was last seen; the quiet period counts from here.
        var quietSince: Instant
    }

    /// `file_stable_seconds`: how long content must stay unchanged with no writer.
    public var quietPeriod: Duration
    /// How soon to look again while a writer holds the file (its close raises an event too,
    /// but writers on other hosts of a network filesystem raise none).
    public var writerRecheckInterval: Duration
    private var records: [String: Record] = [:]

    public init(quietPeriod: Duration = .seconds(5), writerRecheckInterval: Duration = .seconds(1)) {
        self.quietPeriod = quietPeriod
        self.writerRecheckInterval = writerRecheckInterval
    }

    /// The names being tracked (not yet stable, not gone).
    public var trackedNames: [String] { records.keys.sorted() }

    /// Records an event for `name`. A rename into the directory replaces whatever was known
    /// under that name; any other activity restarts the quiet period.
    public mutating func noteArrival(_ name: String, _ arrival: Arrival, at now: Instant) {
        switch arrival {
        case .movedIn:
            records[name] = Record(arrival: .movedIn, lastObservation: nil, quietSince: now)
        case .written:
            // Writing after a rename makes it an ordinary copy again.
            records[name] = Record(arrival: .written, lastObservation: records[name]?.lastObservation, quietSince: now)
        case .discovered:
            if records[name] == nil {
                records[name] = Record(arrival: .discovered, lastObservation: nil, quietSince: now)
            }
        }
    }

    /// Feeds one look at `name` (nil: it does not exist) and returns the verdict. A name not
    /// seen before is tracked as `.discovered`. A `.stable` or `.gone` verdict stops tracking.
    public mutating func observe(_ name: String, _ observation: FileObservation?, at now: Instant) -> Verdict {
        guard let observation else {
            records[name] = nil
            return .gone
        }
        var record = records[name] ?? Record(arrival: .discovered, lastObservation: nil, quietSince: now)
        let previous = record.lastObservation
        record.lastObservation = observation

        if observation.hasWriter {
            // Still being written, whatever its size does: a stalled copy is not a finished one.
            record.quietSince = now
            if record.arrival == .movedIn { record.arrival = .written }
            records[name] = record
            return .pending(recheckAt: now.advanced(by: writerRecheckInterval))
        }
        guard let previous else {
            if record.arrival == .movedIn {
                records[name] = nil
                return .stable
            }
            // Nothing to compare with yet: the quiet period starts at this first look.
            record.quietSince = now
            records[name] = record
            return .pending(recheckAt: now.advanced(by: quietPeriod))
        }
        if !previous.sameContent(as: observation) {
            record.quietSince = now
            if record.arrival == .movedIn { record.arrival = .written }
        }
        let quietUntil = record.quietSince.advanced(by: quietPeriod)
        if now >= quietUntil {
            records[name] = nil
            return .stable
        }
        records[name] = record
        return .pending(recheckAt: quietUntil)
    }

    /// Stops tracking `name` (deleted, moved out, taken by the caller).
    public mutating func forget(_ name: String) {
        records[name] = nil
    }
}
