import Foundation
import Journal
import Logging
import Stages

/// `hyper2kvm convert SOURCE`: the same journal, stages and `JobLifecycle` as the daemon,
/// for one file. Running the same command again after a crash resumes the job where it
/// stopped. It waits for space and retries as the daemon does; Ctrl-C leaves the job
/// resumable by the same command.
public struct OneShotConversion: Sendable {
    public typealias Lifecycle = DaemonJobLifecycle
    public let configuration: Configuration
    public let logger: Logger

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// `progress`: every progress report of the running stage, in this process.
    public func run(source: URL, progress: @escaping @Sendable (Int64, Double) -> Void = { _, _ in }) async throws -> Lifecycle.Ending {
        let stateDirectory = URL(fileURLWithPath: configuration.stateDir)
        try FileManager.default.createDirectory(at: stateDirectory, withIntermediateDirectories: true)
        let journal = try JournalContinuity.openForWriting(configuration)
        defer { try? journal.close() }

        let runner = JobRunner.standard(configuration: configuration, journal: journal, logger: logger, fromQueue: false,
                                        progress: progress)
        let identity = try JobIntake.identity(of: source)
        let earlier = try journal.jobs(matchingIdentity: identity).filter { $0.sourcePath == source.path }
        // An unfinished job of this path is resumed even if the file changed meanwhile: the
        // runner then notices the change and fails it, rather than silently starting over.
        let unfinishedOfPath = try journal.allJobs().filter {
            $0.sourcePath == source.path && ![.published, .archived, .failed, .duplicate].contains($0.state)
        }
        let jobID: Int64
        if let published = earlier.first(where: { $0.state == .published || $0.state == .archived }) {
            logger.info("already converted by job \(published.id): \(published.outputPath ?? "?")")
            // A crash right after `published` may have left the scratch files behind.
            try? FileManager.default.removeItem(at: runner.workDirectory(of: published.id))
            return .published(outputPath: published.outputPath ?? configuration.outputDir)
        } else if let unfinished = unfinishedOfPath.last {
            jobID = unfinished.id
            var lifecycle = try runner.lifecycle(of: jobID)
            let actions = lifecycle.handle(.restarted(reason: "convert command run again", crash: nil, claimant: "pid \(getpid())"),
                                           now: .now)
            if let ending = try carryOut(actions, jobID: jobID, runner: runner) { return ending }
            logger.info("resuming job \(jobID) at its last completed stage")
        } else {
            jobID = try JobIntake.claimNewJob(source: source, journal: journal, vmName: configuration.conversion.vmName,
                                              detail: "hyper2kvm convert", policy: runner.policy).id
        }

        while true {
            let run = try await runner.run(jobID: jobID)
            var resumed = false
            for followUp in run.followUps {
                let event: Lifecycle.Event
                switch followUp {
                case .retry(let at, let after):
                    logger.warning("job \(jobID): retrying in \(Int(after.seconds)) s (Ctrl-C stops; the same command resumes)")
                    try await Task.sleep(until: at, clock: .continuous)
                    event = .retryDue
                case .waitForSpace(let need):
                    logger.warning("job \(jobID) is waiting for space (Ctrl-C stops; the same command resumes once space is free)")
                    try await SpaceWait(configuration: configuration).until(need)
                    event = .spaceReturned
                default:
                    continue
                }
                var lifecycle = try runner.lifecycle(of: jobID)
                _ = try carryOut(lifecycle.handle(event, now: .now), jobID: jobID, runner: runner)
                resumed = true
            }
            if !resumed { return run.ending }
        }
    }

    /// Journal actions of a restart or a timer; returns an ending when the job ended there.
    private func carryOut(_ actions: [Lifecycle.Action], jobID: Int64, runner: JobRunner) throws -> Lifecycle.Ending? {
        var followUps: [Lifecycle.Action] = []
        if let ending = try runner.journalActions.carryOut(actions, jobID: jobID, followUps: &followUps) { return ending }
        // A restart can end a job for good (it failed before the command was run again).
        guard let job = try runner.journal.job(jobID), job.state == .failed else { return nil }
        return .failed(stage: job.stage, message: job.error ?? "failed", code: nil)
    }
}
