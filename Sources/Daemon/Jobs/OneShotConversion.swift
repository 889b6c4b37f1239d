import Foundation
import Journal
import Logging
import Stages

/// `hyper2kvm convert SOURCE`: the same journal and stages as the daemon, for one file.
/// Running the same command again after a crash resumes the job where it stopped.
public struct OneShotConversion: Sendable {
    public let configuration: Configuration
    public let logger: Logger

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    public func run(source: URL, progress: @escaping @Sendable (Int64, Double) -> Void = { _, _ in }) async throws -> JobRunner.Outcome {
        let stateDirectory = URL(fileURLWithPath: configuration.stateDir)
        try FileManager.default.createDirectory(at: stateDirectory, withIntermediateDirectories: true)
        let journal = try JournalContinuity.openForWriting(configuration)
        defer { try? journal.close() }

        let runner = JobRunner.standard(configuration: configuration, journal: journal, logger: logger)
        let identity = try JobIntake.identity(of: source)
        let earlier = try journal.jobs(matchingIdentity: identity).filter { $0.sourcePath == source.path }
        // An unfinished job of this path is resumed even if the file changed meanwhile: the
        // runner then notices the change and fails it, rather than silently starting over.
        let unfinishedOfPath = try journal.allJobs().filter {
            $0.sourcePath == source.path
                && (JobRecovery.inFlight.contains($0.state) || [.interrupted, .discovered, .stable].contains($0.state))
        }
        let job: JobRecord
        if let published = earlier.first(where: { $0.state == .published || $0.state == .archived }) {
            logger.info("already converted by job \(published.id): \(published.outputPath ?? "?")")
            // A crash right after `published` may have left the scratch files behind.
            try? FileManager.default.removeItem(at: runner.workDirectory(of: published.id))
            return .published(outputPath: published.outputPath ?? configuration.outputDir)
        } else if let unfinished = unfinishedOfPath.last {
            if unfinished.state == .discovered || unfinished.state == .stable {
                try JobIntake.completeClaim(unfinished, journal: journal, reason: "convert command run again")
            } else {
                try JobRecovery.resume(unfinished, journal: journal, reason: "convert command run again")
            }
            job = unfinished
            logger.info("resuming job \(job.id) at its last completed stage")
        } else {
            job = try JobIntake.claimNewJob(source: source, journal: journal, vmName: configuration.conversion.vmName,
                                            detail: "hyper2kvm convert")
        }

        let watcher = ProgressWatcher(journal: journal, jobID: job.id, report: progress)
        let watching = Task { await watcher.watch() }
        defer { watching.cancel() }
        let outcome = try await runner.run(jobID: job.id)
        switch outcome {
        case .failed:
            if try journal.job(job.id)?.state != .failed {
                try journal.transition(job: job.id, to: .failed, stage: nil, detail: "one-shot conversion stopped at the first failure")
            }
            runner.releaseReservation(jobID: job.id)
        case .waitingForSpace(let stage, let message, _):
            // A one-shot run has nobody to wait for; the job stays resumable: run the command again.
            try journal.transition(job: job.id, to: .interrupted, stage: stage, detail: "out of space; run the command again once space is free")
            return .failed(stage: stage, message: message + " (free space, then run the same command again: the job resumes)", code: .noSpace)
        case .published:
            break
        }
        return outcome
    }
}

/// Polls the job's recorded progress for the command line's progress bar.
struct ProgressWatcher: Sendable {
    let journal: JobJournal
    let jobID: Int64
    let report: @Sendable (Int64, Double) -> Void

    func watch() async {
        var last: Double = -1
        while !Task.isCancelled {
            if let job = try? journal.job(jobID), let fraction = job.progress, fraction != last {
                last = fraction
                report(jobID, fraction)
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
    }
}
