import Daemon
import Foundation
import Journal
import Stages
import Synchronization

/// One reading of the daemon: the journal's jobs and totals, the stages finished since the last
/// reading, rate estimates and free space. Both `/metrics` and the page's data come from one.
struct EndpointReading: Sendable {
    var jobs: [JobRecord]
    var totals: JournalTotals
    var finishedStages: [(stage: String, seconds: Double)]
    var estimates: [Int64: ProgressRates.Estimate]
    /// Free space of the filesystems holding `work` and `output`, by that name.
    var spaces: [String: FileSystemSpace]
}

/// What the endpoint remembers between requests: where it is in the journal's transitions,
/// the rate baselines and the last totals. Requests may come at once; readings are serialized.
final class EndpointState: Sendable {
    let context: DaemonContext
    let metrics: EndpointMetrics

    private struct Memory: Sendable {
        var durations = StageDurations()
        var rates = ProgressRates()
        var totals: JournalTotals?
    }
    private let memory = Mutex(Memory())
    private let clock = ContinuousClock()
    private let started: ContinuousClock.Instant

    /// At most this many transitions are read per request; the rest at the next one. The
    /// first scrape of a journal with a long history must not hold a request for seconds.
    static let transitionsPerReading = 20_000

    init(context: DaemonContext, metrics: EndpointMetrics) {
        self.context = context
        self.metrics = metrics
        started = clock.now
    }

    /// Reads the journal and the filesystems and updates the metrics.
    func read() throws -> EndpointReading {
        try memory.withLock { memory in
            let journal = context.journal
            let jobs = try journal.allJobs()
            let totals = try journal.totals()
            let rows = try journal.transitions(after: memory.durations.lastTransition, limit: Self.transitionsPerReading)
            let finished = memory.durations.read(rows)
            let now = (clock.now - started).components
            let estimates = memory.rates.sample(jobs, now: Double(now.seconds) + Double(now.attoseconds) / 1e18)
            var spaces: [String: FileSystemSpace] = [:]
            for (name, path) in [("work", context.configuration.workDir), ("output", context.configuration.outputDir)] {
                spaces[name] = FileSystemSpace.of(path)
            }
            let reading = EndpointReading(jobs: jobs, totals: totals, finishedStages: finished, estimates: estimates, spaces: spaces)
            metrics.update(reading, previous: memory.totals)
            memory.totals = totals
            return reading
        }
    }
}
