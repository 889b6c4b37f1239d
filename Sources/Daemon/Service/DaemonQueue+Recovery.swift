import Foundation
import Journal

/// Recovery at a start: every job the journal shows unfinished is handed to its lifecycle
/// with `restarted`, oldest first, and the answer carried out (resume and queue, claim,
/// archive, fail as poison…).
extension DaemonQueue {
    /// `crash`: the record of the previous run's death by a fatal signal (nil after a clean
    /// stop, SIGKILL or a power cut); a job it hit inside a stage runs alone, and one it hit
    /// twice in a row is failed as poison (`PoisonRule`).
    func recoverInterruptedJobs(crash: CrashRecord? = nil) throws {
        let states = JobRecovery.inFlight.union([.interrupted, .published, .retrying, .stageFailed, .discovered, .stable])
        for job in try journal.jobs(in: states).sorted(by: { $0.id < $1.id }) {
            taken.formUnion(archiveMembers(of: job).map(\.name))
            var lifecycle = try lifecycle(of: job.id)
            let note = crash.map { CrashNote.detail($0, stage: job.stage) }
            let actions = lifecycle.handle(.restarted(reason: "daemon restarted", crash: note, claimant: "pid \(getpid())"),
                                           now: .now)
            if actions.contains(.enqueue(alone: false)) || actions.contains(.enqueue(alone: true)) {
                logger.info("resuming job \(job.id) (\(job.sourcePath)) after restart")
            }
            try perform(actions, jobID: job.id)
        }
        schedule()
    }
}
