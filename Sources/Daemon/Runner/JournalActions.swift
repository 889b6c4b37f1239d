import Foundation
import Journal
import Stages

/// Carries out the lifecycle's actions that touch only one job's journal rows and work
/// directory, with the crash points the crash tests stop at. Shared by every driver, so a
/// transition is written the same way by the runner, recovery and the one-shot command.
struct JournalActions: Sendable {
    typealias Lifecycle = DaemonJobLifecycle
    let journal: JobJournal
    let workRoot: URL
    let facts: StageFactReader

    func workDirectory(of jobID: Int64) -> URL {
        workRoot.appendingPathComponent("job-\(jobID)")
    }

    /// Carries out the actions that touch only this job's journal rows and work directory;
    /// the rest go to `followUps` for the caller. Returns the run's ending when one is among them.
    func carryOut(_ actions: [Lifecycle.Action], jobID: Int64, artifacts: [NewArtifact] = [],
                          followUps: inout [Lifecycle.Action]) throws -> Lifecycle.Ending? {
        var startedAt = ""
        return try carryOut(actions, jobID: jobID, artifacts: artifacts, followUps: &followUps, startedAt: &startedAt)
    }

    /// `startedAt`: set to the time of a `stage-started` row written here.
    func carryOut(_ actions: [Lifecycle.Action], jobID: Int64, artifacts: [NewArtifact] = [],
                          followUps: inout [Lifecycle.Action], startedAt: inout String) throws -> Lifecycle.Ending? {
        var ending: Lifecycle.Ending?
        for action in actions {
            switch action {
            case .journal(.stageCompleted, let stage?, let detail):
                try journal.completeStage(job: jobID, stage: stage, artifacts: artifacts, detail: detail.isEmpty ? nil : detail)
                CrashPoints.hit("\(stage).after-commit")
            case .journal(let state, let stage, let detail):
                let point = state == .stageStarted ? stage.map { "\($0)." } : state == .published ? "" : nil
                if let point { CrashPoints.hit(point + (state == .published ? "before-published" : "before-start")) }
                let row = try journal.transition(job: jobID, to: state, stage: stage, detail: detail)
                if state == .stageStarted { startedAt = row.at }
                if let point { CrashPoints.hit(point + (state == .published ? "after-published" : "after-start")) }
            case .recordError(let message):
                try journal.updateJob(job: jobID, vmName: nil, outputPath: nil, error: message, sourceSHA256: nil)
            case .recordOutput(let path):
                try journal.updateJob(job: jobID, vmName: nil, outputPath: path, error: nil, sourceSHA256: nil)
            case .recordSourceDigest(let key):
                try journal.updateJob(job: jobID, vmName: nil, outputPath: nil, error: nil, sourceSHA256: key)
            case .discardWork:
                try? FileManager.default.removeItem(at: workDirectory(of: jobID))
            case .releaseReservation:
                releaseReservation(jobID: jobID)
            case .end(let end):
                ending = end
            case .runStage:
                continue
            case .enqueue, .retry, .waitForSpace, .archive:
                followUps.append(action)
            }
        }
        return ending
    }

    /// Gives back the output directory a job reserved and removes its work directory.
    func releaseReservation(jobID: Int64) {
        facts.releaseReservation(jobID: jobID, artifacts: (try? journal.artifacts(job: jobID)) ?? [])
        try? FileManager.default.removeItem(at: workDirectory(of: jobID))
    }
}
