import Foundation
import Journal
import Synchronization

func fileSize(_ url: URL) -> Int64? {
    guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.path) else { return nil }
    return (attributes[.size] as? NSNumber)?.int64Value
}

extension Duration {
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}

/// Set when the daemon is stopping: running jobs start no further stage.
public final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    public init() {}
    public var isSet: Bool { value.load(ordering: .relaxed) }
    public func set() { value.store(true, ordering: .relaxed) }
}

/// Passes every progress report of a stage on to an in-process observer (the command
/// line's bar, a future operations API) and keeps a coarse copy in the journal, at most
/// once per `journalInterval` and at the end, for `status` from another process. Nothing
/// reads the copy back in this process.
final class ProgressRecorder: Sendable {
    /// Each journal write is a synchronous commit; `status` needs a figure, not a stream.
    static let journalInterval: Duration = .seconds(2)

    private let journal: JobJournal
    private let jobID: Int64
    private let observer: @Sendable (Int64, Double) -> Void
    private let lastWrite = Mutex<ContinuousClock.Instant?>(nil)

    init(journal: JobJournal, jobID: Int64, observer: @escaping @Sendable (Int64, Double) -> Void) {
        self.journal = journal
        self.jobID = jobID
        self.observer = observer
    }

    var record: @Sendable (Double) -> Void {
        { [self] reported in
            let fraction = min(max(reported, 0), 1)
            observer(jobID, fraction)
            let now = ContinuousClock.now
            let due = lastWrite.withLock { last -> Bool in
                if let last, now - last < Self.journalInterval, fraction < 1 { return false }
                last = now
                return true
            }
            if due { try? journal.setProgress(job: jobID, fraction: fraction) }
        }
    }
}
