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
    var running: [Int64: Task<Void, Never>] = [:]
    /// Queue names that already belong to a job (or are waiting to), so no file is taken twice.
    var taken: Set<String> = []
    var stopping = false
    var idleWaiter: CheckedContinuation<Void, Never>?
    let stopFlag = StopFlag()
    /// Jobs waiting for a retry's delay or for space, with the wait.
    var waiting: [Int64: (reason: WaitReason, task: Task<Void, Never>)] = [:]
    /// Jobs that were inside a stage when the daemon crashed: each runs alone, so a second
    /// crash is blamed on the job that caused it and not on a neighbour.
    var crashSuspects: Set<Int64> = []

    enum WaitReason { case retry, space }

    init(configuration: Configuration, journal: JobJournal, logger: Logger) {
        self.configuration = configuration
        self.journal = journal
        self.logger = logger
        runner = JobRunner.standard(configuration: configuration, journal: journal, logger: logger, stopFlag: stopFlag,
                                    fromQueue: true)
        sampler = FileStabilitySampler(directory: configuration.watchDir, clock: ContinuousClock(), logger: logger)
        tracker = FileStabilityTracker(quietPeriod: .milliseconds(Int64(configuration.fileStableSeconds * 1000)))
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

    /// Waits off the actor, then tells the job's lifecycle that its wait is over.
    private func wait(_ jobID: Int64, _ reason: WaitReason, _ until: @escaping @Sendable () async throws -> Void) {
        waiting[jobID] = (reason, Task {
            do { try await until() } catch { return }  // cancelled at shutdown: the next start resumes the job
            self.waitEnded(jobID, reason)
        })
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
            if !running.isEmpty && (crashSuspects.contains(next) || running.keys.contains(where: crashSuspects.contains)) { break }
            let jobID = pending.removeFirst()
            logger.info("🔄 Processing: job \(jobID)")
            running[jobID] = Task { [runner, logger] in
                do {
                    let run = try await runner.run(jobID: jobID)
                    self.finish(jobID, run)
                } catch is CancellationError {
                    logger.notice("job \(jobID) interrupted; it resumes at the next start")
                    self.finishInterrupted(jobID)
                } catch {
                    logger.error("job \(jobID): \(error)")
                    self.finishFailed(jobID, error)
                }
            }
        }
    }

    private func finishInterrupted(_ jobID: Int64) {
        running[jobID] = nil
    }

    /// The run threw outside a stage: the job fails for good, as the lifecycle says.
    private func finishFailed(_ jobID: Int64, _ error: any Error) {
        running[jobID] = nil
        crashSuspects.remove(jobID)
        defer { schedule() }
        do {
            var lifecycle = try lifecycle(of: jobID)
            try perform(lifecycle.handle(.runFailed(message: String(describing: error)), now: .now), jobID: jobID)
        } catch {
            logger.error("job \(jobID): cannot record its end: \(error)")
        }
    }

    private func finish(_ jobID: Int64, _ run: JobRunner.Run) {
        running[jobID] = nil
        crashSuspects.remove(jobID)
        defer { schedule() }
        switch run.ending {
        case .published(let path):
            logger.info("✅ Completed: job \(jobID) → \(path)")
        case .waitingForSpace(let stage, let message):
            logger.warning("job \(jobID) is waiting for space (\(stage)): \(message)")
        case .failed, .retrying, .interrupted:
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
        let space = waiting.values.filter { $0.reason == .space }.count
        return "\(running.count) running, \(pending.count) queued, \(tracker.trackedNames.count) arriving"
            + (space == 0 ? "" : ", \(space) waiting for space")
    }

    // MARK: - Stop

    func shutdown(grace: Duration) async {
        guard !stopping else { return }
        stopping = true
        stopFlag.set()
        wakeStabilityChecks()
        for (_, wait) in waiting { wait.task.cancel() }
        // Running stages get `grace` to finish; whichever comes first ends the wait (no polling).
        let jobs = running
        let finishedInTime = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                try? await Task.sleep(for: grace)
                return false
            }
            group.addTask {
                for task in jobs.values { await task.value }
                return true
            }
            let first = await group.next() ?? true
            group.cancelAll()
            if !first {
                for (jobID, task) in jobs where running[jobID] != nil {
                    logger.notice("interrupting job \(jobID)")
                    task.cancel()
                }
            }
            await group.waitForAll()
            return first
        }
        if finishedInTime { logger.info("every running job ended within the grace period") }
    }

    func waitForRunningJobs() async {
        for task in running.values { await task.value }
    }
}
