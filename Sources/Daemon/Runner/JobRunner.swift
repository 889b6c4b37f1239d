import Foundation
import Journal
import Logging
import Stages
import SystemSupport

/// Drives one job's stages in order through the journal, as the design's protocol says:
/// write-ahead `stage-started`, outputs private until fsynced and renamed, then
/// `stage-completed` with every output's size and SHA-256 in one transaction.
/// Completed, intact stages are never redone; an interrupted stage is rerun from scratch.
///
/// A driver: `JobLifecycle` decides every move; the runner reports what happened and
/// carries out the journal's share of the answer. What is left (retry timers, waiting for
/// space, archiving) goes back to its caller in `Run.followUps`.
public struct JobRunner: Sendable {
    public typealias Lifecycle = DaemonJobLifecycle

    /// How a run of a job ended, and what the caller still has to carry out.
    public struct Run: Sendable, Equatable {
        public var ending: Lifecycle.Ending
        public var followUps: [Lifecycle.Action]
    }

    let journal: JobJournal
    let stages: [any PipelineStage]
    let options: ConversionOptions
    let workRoot: URL
    let outputRoot: URL
    let logger: Logger
    let stopFlag: StopFlag
    let policy: Lifecycle.Policy
    /// Every progress report of a stage, in the process (the journal keeps a coarse copy).
    let progress: @Sendable (Int64, Double) -> Void

    public init(journal: JobJournal, stages: [any PipelineStage], options: ConversionOptions,
                workRoot: URL, outputRoot: URL, logger: Logger, stopFlag: StopFlag = StopFlag(),
                policy: Lifecycle.Policy, progress: @escaping @Sendable (Int64, Double) -> Void = { _, _ in }) {
        self.journal = journal
        self.stages = stages
        self.options = options
        self.workRoot = workRoot
        self.outputRoot = outputRoot
        self.logger = logger
        self.stopFlag = stopFlag
        self.policy = policy
        self.progress = progress
    }

    /// The runner of the standard pipeline with the configuration's directories, options and
    /// retry policy (one place for the one-shot command and the daemon).
    public static func standard(configuration: Configuration, journal: JobJournal, logger: Logger,
                                stopFlag: StopFlag = StopFlag(), fromQueue: Bool,
                                progress: @escaping @Sendable (Int64, Double) -> Void = { _, _ in }) -> JobRunner {
        JobRunner(
            journal: journal,
            stages: StandardPipeline.stages(toolVersion: Hyper2KVMVersion.current,
                                            parallelDiskCopies: configuration.parallelProcessing ? configuration.parallelDiskCopies : 1),
            options: configuration.conversion,
            workRoot: URL(fileURLWithPath: configuration.workDir),
            outputRoot: URL(fileURLWithPath: configuration.outputDir),
            logger: logger,
            stopFlag: stopFlag,
            policy: .init(retry: configuration.retryPolicy, fromQueue: fromQueue),
            progress: progress)
    }

    public func workDirectory(of jobID: Int64) -> URL {
        workRoot.appendingPathComponent("job-\(jobID)")
    }

    var facts: StageFactReader { StageFactReader(outputRoot: outputRoot, logger: logger) }
    var journalActions: JournalActions { JournalActions(journal: journal, workRoot: workRoot, facts: facts) }

    /// The job's lifecycle as its journal left it.
    public func lifecycle(of jobID: Int64) throws -> Lifecycle {
        guard let job = try journal.job(jobID) else { throw JournalError.unknownJob(jobID) }
        return Lifecycle(policy: policy, history: try journal.history(job: jobID), error: job.error)
    }

    /// Runs every stage not yet completed. The job must be `claimed` or `resumed`.
    public func run(jobID: Int64) async throws -> Run {
        guard let job = try journal.job(jobID) else { throw JournalError.unknownJob(jobID) }
        let workDirectory = workDirectory(of: jobID)
        try FileManager.default.createDirectory(at: workDirectory, withIntermediateDirectories: true)
        let source = URL(fileURLWithPath: job.sourcePath)
        guard let kind = InputKind(rawValue: job.sourceKind) else {
            throw StageError(.badInput, file: job.sourcePath, "unknown input kind '\(job.sourceKind)' in the journal")
        }

        var lifecycle = Lifecycle(policy: policy, history: try journal.history(job: jobID), error: job.error)
        var ledger = try StageLedger(history: journal.history(job: jobID), artifacts: journal.artifacts(job: jobID))
        var followUps: [Lifecycle.Action] = []
        let firstToRun = try firstStageToRun(ledger: &ledger, jobID: jobID)
        let recorder = ProgressRecorder(journal: journal, jobID: jobID, observer: progress)

        for stage in stages.dropFirst(firstToRun) {
            let stageName = stage.name.rawValue
            if stopFlag.isSet { _ = lifecycle.handle(.stopRequested, now: .now) }
            if !lifecycle.stopping, let change = SourceIdentityCheck.change(of: source, recorded: job.identity) {
                let actions = lifecycle.handle(.sourceChanged(stage: stageName, change: change, source: job.sourcePath), now: .now)
                if let ending = try journalActions.carryOut(actions, jobID: jobID, followUps: &followUps) {
                    return Run(ending: ending, followUps: followUps)
                }
            }
            let context = StageContext(
                jobID: jobID, source: source, kind: kind, workDirectory: workDirectory, options: options,
                recorded: ledger.recordedFiles, recordedSHA256: ledger.recordedSHA256,
                stageHistory: ledger.timings, outputRoot: outputRoot, progress: recorder.record,
                checkpoints: JournalCheckpoints(journal: journal, jobID: jobID, stage: stageName))
            let skipReason = lifecycle.stopping ? nil : stage.skipReason(in: context)
            let next = lifecycle.handle(.nextStage(stageName, skipReason: skipReason,
                                                   detail: ledger.pendingDetail ?? "attempt \(ledger.attempts(of: stageName) + 1)"),
                                        now: .now)
            var startedAt = Timestamp.now()
            if let ending = try journalActions.carryOut(next, jobID: jobID, followUps: &followUps, startedAt: &startedAt) {
                return Run(ending: ending, followUps: followUps)
            }
            guard next.contains(.runStage(stageName)) else {
                logger.info("skipped \(stageName): \(skipReason ?? "")", metadata: ["job": "\(jobID)"])
                ledger.noteSkipped(stageName, reason: skipReason ?? "")
                continue
            }
            ledger.pendingDetail = nil
            try removeLeftovers(in: workDirectory)
            logger.info("\(stageName) started", metadata: ["job": "\(jobID)", "attempt": "\(ledger.attempts(of: stageName) + 1)"])
            let began = ContinuousClock.now
            let event: Lifecycle.Event
            var artifacts: [NewArtifact] = []
            do {
                let outputs = try await stage.run(in: context)
                artifacts = try record(outputs, in: workDirectory, ledger: ledger)
                CrashPoints.hit("\(stageName).outputs-durable")
                event = .stageFinished(stageName, detail: outputs.detail ?? "", facts.facts(of: artifacts))
            } catch where Task.isCancelled {
                // A stopped child tool reports a failure; the cause is the shutdown.
                try? removeLeftovers(in: workDirectory)
                event = .stageInterrupted(stageName)
            } catch {
                let stageError = error as? StageError
                logger.error("\(stageName) failed: \(error)", metadata: ["job": "\(jobID)"])
                try? removeLeftovers(in: workDirectory)
                event = .stageFailed(stageName, code: stageError?.code, message: String(describing: error),
                                     need: stageError?.spaceNeed)
            }
            let actions = lifecycle.handle(event, now: .now)
            if let ending = try journalActions.carryOut(actions, jobID: jobID, artifacts: artifacts, followUps: &followUps) {
                if ending == .interrupted { throw CancellationError() }
                if case .failed(_, _, let code) = ending { JobMetrics.failed(code: code) }
                return Run(ending: ending, followUps: followUps)
            }
            let seconds = (ContinuousClock.now - began).seconds
            ledger.noteCompleted(stageName, artifacts: artifacts, startedAt: startedAt, seconds: seconds)
            logger.info("\(stageName) completed in \(String(format: "%.2f", seconds)) s", metadata: ["job": "\(jobID)"])
        }

        let done = lifecycle.handle(.pipelineDone(publishedDirectory: facts.publishedDirectory(recorded: ledger.recordedFiles),
                                                  result: facts.result(recorded: ledger.recordedFiles)),
                                    now: .now)
        guard let ending = try journalActions.carryOut(done, jobID: jobID, followUps: &followUps) else {
            throw JournalError.unknownJob(jobID)
        }
        return Run(ending: ending, followUps: followUps)
    }

    /// Gives back the output directory a job reserved, once the job has failed for good,
    /// and removes its work directory.
    public func releaseReservation(jobID: Int64) {
        journalActions.releaseReservation(jobID: jobID)
    }
}
