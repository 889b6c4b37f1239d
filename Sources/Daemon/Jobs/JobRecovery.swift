import Journal

/// Facts about recovery that other parts name; the decisions (resume, claim, fail as
/// poison) are `JobLifecycle`'s `restarted`.
public enum JobRecovery {
    /// States in which a job was in the middle of its pipeline.
    public static let inFlight: Set<JobState> = [.claimed, .stageStarted, .stageCompleted, .stageSkipped, .resumed, .waitingForSpace]

    /// The `.error.json` code of a job failed because it crashed the daemon again and again.
    public static let poisonCode = "poison"

    public static func poisonMessage(crashes: [String]) -> String {
        "poison: the daemon crashed \(crashes.count) times in a row while converting this file, with no stage completing in between;"
            + " it is not resumed again (" + crashes.map { String($0.dropFirst(CrashNote.prefix.count)) }.joined(separator: "; ") + ")"
    }
}
