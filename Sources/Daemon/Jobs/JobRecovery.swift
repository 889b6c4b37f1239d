import Journal

/// Brings a job that was running when the process died back to a runnable state,
/// journaling the interruption and the resumption (design: resume).
public enum JobRecovery {
    /// States in which a job was in the middle of its pipeline.
    public static let inFlight: Set<JobState> = [.claimed, .stageStarted, .stageCompleted, .stageSkipped, .resumed, .waitingForSpace]

    /// Journals `interrupted` (unless already) then `resumed`.
    public static func resume(_ job: JobRecord, journal: JobJournal, reason: String) throws {
        switch job.state {
        case .interrupted:
            break
        case let state where inFlight.contains(state):
            try journal.transition(job: job.id, to: .interrupted, stage: job.stage, detail: reason)
        default:
            return
        }
        try journal.transition(job: job.id, to: .resumed, stage: nil, detail: "resuming after: \(reason)")
    }
}
