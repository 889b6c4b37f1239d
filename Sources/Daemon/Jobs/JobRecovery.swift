import Journal

/// Brings a job that was running when the process died back to a runnable state,
/// journaling the interruption and the resumption (design: resume).
public enum JobRecovery {
    /// States in which a job was in the middle of its pipeline.
    public static let inFlight: Set<JobState> = [.claimed, .stageStarted, .stageCompleted, .stageSkipped, .resumed, .waitingForSpace]

    /// The `.error.json` code of a job failed because it crashed the daemon again and again.
    public static let poisonCode = "poison"

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

    /// At a daemon start: `crash` is the record the previous run left when it died of a fatal
    /// signal (nil after a clean stop, SIGKILL or a power cut: those resume as always). A job
    /// that was inside a stage then is journaled `interrupted` with the crash as detail, and
    /// `PoisonRule` decides whether it resumes or is failed as poison (journaled `failed`;
    /// the caller archives it to `.errors/`). Jobs not inside a stage were not what crashed.
    public static func recoverAtStart(_ job: JobRecord, journal: JobJournal, crash: CrashRecord?) throws -> PoisonRule.Decision {
        guard let crash, job.state == .stageStarted else {
            try resume(job, journal: journal, reason: crash == nil ? "daemon restarted" : "daemon restarted after a crash while no stage of this job ran")
            return .resume
        }
        let note = CrashNote.detail(crash, stage: job.stage)
        try journal.transition(job: job.id, to: .interrupted, stage: job.stage, detail: note)
        let decision = PoisonRule.decide(history: try journal.history(job: job.id))
        switch decision {
        case .resume:
            try journal.transition(job: job.id, to: .resumed, stage: nil, detail: "resuming after: \(note)")
        case .poison(let crashes):
            let message = poisonMessage(crashes: crashes)
            try journal.transition(job: job.id, to: .failed, stage: nil, detail: message)
            try journal.updateJob(job: job.id, vmName: nil, outputPath: nil, error: message, sourceSHA256: nil)
        }
        return decision
    }

    public static func poisonMessage(crashes: [String]) -> String {
        "poison: the daemon crashed \(crashes.count) times in a row while converting this file, with no stage completing in between;"
            + " it is not resumed again (" + crashes.map { String($0.dropFirst(CrashNote.prefix.count)) }.joined(separator: "; ") + ")"
    }
}
