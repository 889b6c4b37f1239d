import Foundation
import Journal
import Logging
import Stages

/// The daemon's scheduler: files waiting to become stable, jobs waiting for a slot, jobs
/// running, jobs waiting for a retry or for space. Everything that must survive a crash is
/// in the journal; every decision about a job is `JobLifecycle`'s. This only carries out
/// the lifecycle's actions: it runs jobs, arms timers and archives sources.
actor DaemonQueue {
    typealias Lifecycle = DaemonJobLifecycle
    let configuration: Configuration
    let journal: JobJournal
    let logger: Logger
    let runner: JobRunner
    let sampler: FileStabilitySampler<ContinuousClock>
    var tracker: FileStabilityTracker<ContinuousClock.Instant>
    /// Jobs ready to run, first come first served.
    var pending: [Int64] = []
    var running: Set<Int64> = []
    /// Queue names that already belong to a job (or are waiting to), so no file is taken twice.
    var taken: Set<String> = []
    /// Set once at shutdown: no new job and no new stage starts.
    let stopFlag = StopFlag()
    var stopping: Bool { stopFlag.isSet }
    /// Jobs waiting for a retry's delay or for space.
    var waiting: [Int64: WaitReason] = [:]
    /// Work the scheduler service runs as child tasks: job runs and duplicate checks
    /// (`jobs`), and waits for a retry or for space (`waits`, cancelled at shutdown).
    let jobs: AsyncStream<Work>
    let waits: AsyncStream<Work>
    private let jobsInput: AsyncStream<Work>.Continuation
    private let waitsInput: AsyncStream<Work>.Continuation
    /// Signalled when a file arrives (the stability checks wake) and when a job ends (a drain wakes).
    let arrivals = Wakeup()
    let jobEnded = Wakeup()
    /// Jobs that were inside a stage when the daemon crashed: each runs alone, so a second
    /// crash is blamed on the job that caused it and not on a neighbour.
    var crashSuspects: Set<Int64> = []

    enum WaitReason { case retry, space }
    typealias Work = @Sendable () async -> Void

    init(configuration: Configuration, journal: JobJournal, logger: Logger) {
        self.configuration = configuration
        self.journal = journal
        self.logger = logger
        runner = JobRunner.standard(configuration: configuration, journal: journal, logger: logger, stopFlag: stopFlag,
                                    fromQueue: true)
        sampler = FileStabilitySampler(directory: configuration.watchDir, clock: ContinuousClock(), logger: logger)
        tracker = FileStabilityTracker(quietPeriod: .milliseconds(Int64(configuration.fileStableSeconds * 1000)))
        (jobs, jobsInput) = AsyncStream.makeStream()
        (waits, waitsInput) = AsyncStream.makeStream()
    }

    /// Hands work to the scheduler service (dropped once shutdown began).
    func spawn(_ work: @escaping Work) {
        jobsInput.yield(work)
    }

    /// The job's lifecycle as the journal has it, knowing whether the daemon is stopping.
    func lifecycle(of jobID: Int64) throws -> Lifecycle {
        var lifecycle = try runner.lifecycle(of: jobID)
        if stopping { _ = lifecycle.handle(.stopRequested, now: .now) }
        return lifecycle
    }

    /// Carries out `actions` for one job: the journal's share through `JournalActions`,
    /// then the scheduler's (queue it, arm a timer, archive its source).
    func perform(_ actions: [Lifecycle.Action], jobID: Int64) throws {
        var followUps: [Lifecycle.Action] = []
        _ = try runner.journalActions.carryOut(actions, jobID: jobID, followUps: &followUps)
        for action in followUps {
            switch action {
            case .enqueue(let alone):
                if alone { crashSuspects.insert(jobID) }
                pending.append(jobID)
            case .retry(let at, let after):
                logger.warning("job \(jobID): retry in \(Int(after.seconds)) s")
                wait(jobID, .retry) { try await Task.sleep(until: at, clock: .continuous) }
            case .waitForSpace(let need):
                wait(jobID, .space) { [configuration] in try await SpaceWait(configuration: configuration).until(need) }
            case .archive(let archive):
                try archiveSource(of: jobID, archive)
            default:
                continue
            }
        }
    }

    /// Waits off the actor (a child task of the scheduler service), then tells the job's
    /// lifecycle that its wait is over. A wait cancelled at shutdown leaves the job as the
    /// journal has it (`retrying`, `waiting-for-space`): the next start resumes it.
    private func wait(_ jobID: Int64, _ reason: WaitReason, _ until: @escaping @Sendable () async throws -> Void) {
        waiting[jobID] = reason
        waitsInput.yield { [self] in
            do { try await until() } catch { return }
            await waitEnded(jobID, reason)
        }
    }

    private func waitEnded(_ jobID: Int64, _ reason: WaitReason) {
        waiting[jobID] = nil
        do {
            var lifecycle = try lifecycle(of: jobID)
            let actions = lifecycle.handle(reason == .retry ? .retryDue : .spaceReturned, now: .now)
            if reason == .space && !actions.isEmpty { logger.info("job \(jobID): space is available again; resuming") }
            try perform(actions, jobID: jobID)
        } catch {
            logger.error("job \(jobID): cannot resume: \(error)")
        }
        schedule()
    }

    func schedule() {
        while !stopping, running.count < configuration.maxConcurrent, let next = pending.first {
            if !running.isEmpty && (crashSuspects.contains(next) || running.contains(where: crashSuspects.contains)) { break }
            let jobID = pending.removeFirst()
            logger.info("🔄 Processing: job \(jobID)")
            running.insert(jobID)
            jobsInput.yield { [self] in await runJob(jobID) }
        }
    }

    private func runJob(_ jobID: Int64) async {
        do {
            let run = try await runner.run(jobID: jobID)
            finish(jobID, run)
        } catch is CancellationError {
            logger.notice("job \(jobID) interrupted; it resumes at the next start")
            finishInterrupted(jobID)
        } catch {
            logger.error("job \(jobID): \(error)")
            finishFailed(jobID, error)
        }
    }

    private func finishInterrupted(_ jobID: Int64) {
        ended(jobID)
    }

    private func ended(_ jobID: Int64) {
        running.remove(jobID)
        crashSuspects.remove(jobID)
        jobEnded.signal()
    }

    /// The run threw outside a stage: the job fails for good, as the lifecycle says.
    private func finishFailed(_ jobID: Int64, _ error: any Error) {
        ended(jobID)
        defer { schedule() }
        do {
            var lifecycle = try lifecycle(of: jobID)
            try perform(lifecycle.handle(.runFailed(message: String(describing: error)), now: .now), jobID: jobID)
        } catch {
            logger.error("job \(jobID): cannot record its end: \(error)")
        }
    }

    private func finish(_ jobID: Int64, _ run: JobRunner.Run) {
        ended(jobID)
        defer { schedule() }
        switch run.ending {
        case .published(let path, let result):
            // The power-loss harness reads "Completed: SOURCE → " as the acknowledgement.
            let source = (try? journal.job(jobID))?.sourcePath ?? "job \(jobID)"
            logger.info("✅ Completed: \(source) → \(path)")
            // Never a plain success for a guest the fix could not promise boots.
            if let result { logger.warning("job \(jobID) \(result) (see metadata.json fix_warnings)") }
        case .waitingForSpace(let stage, let message):
            logger.warning("job \(jobID) is waiting for space (\(stage)): \(message)")
        case .interrupted:
            logger.notice("job \(jobID) interrupted; it resumes at the next start")
        case .failed, .retrying:
            break
        }
        do {
            try perform(run.followUps, jobID: jobID)
        } catch {
            logger.error("job \(jobID): cannot record its end: \(error)")
        }
    }

    /// One line for systemd's STATUS= and the log.
    func statusLine() -> String {
        let space = waiting.values.filter { $0 == .space }.count
        return "\(running.count) running, \(pending.count) queued, \(tracker.trackedNames.count) arriving"
            + (space == 0 ? "" : ", \(space) waiting for space")
    }

    // MARK: - Stop

    /// The first step of a graceful shutdown, from any thread: no new job and no new stage
    /// starts, waits end, the stability checks stop. Running stages go on (`drain`).
    nonisolated func beginShutdown() {
        stopFlag.set()
        jobsInput.finish()
        waitsInput.finish()
        arrivals.signal()
    }

    /// Gives running jobs `grace` to end; returns whether they all did.
    func drain(within grace: Duration) async -> Bool {
        let deadline = ContinuousClock.now + grace
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                try? await Task.sleep(until: deadline, clock: .continuous)
                return false
            }
            group.addTask { [self] in
                while await !running.isEmpty && !Task.isCancelled { await jobEnded.wait() }
                return true
            }
            let first = await group.next() ?? true
            group.cancelAll()
            return first
        }
    }

    var runningJobs: Set<Int64> { running }
}
