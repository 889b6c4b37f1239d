/// The job state machine: the one table of legal transitions.
///
/// Anything not listed is illegal and is refused by the journal before it writes.
public enum TransitionRules {
    /// The only way in: a new job is discovered.
    public static let initialState: JobState = .discovered

    /// Legal successors of each state. Terminal states map to an empty set.
    public static let table: [JobState: Set<JobState>] = [
        .discovered: [.stable, .failed, .duplicate],
        .stable: [.claimed, .failed, .duplicate],
        .claimed: [.stageStarted, .stageSkipped, .failed, .interrupted],
        .stageStarted: [.stageCompleted, .stageFailed, .interrupted, .waitingForSpace],
        .stageCompleted: [.stageStarted, .stageSkipped, .published, .failed, .interrupted],
        .stageSkipped: [.stageStarted, .stageSkipped, .published, .failed, .interrupted],
        .stageFailed: [.retrying, .failed],
        .waitingForSpace: [.resumed, .interrupted, .failed],
        .interrupted: [.resumed, .failed],
        .resumed: [.stageStarted, .stageSkipped, .published, .failed, .interrupted],
        .retrying: [.claimed, .failed],
        .failed: [.retrying],
        .published: [.archived, .interrupted],
        .archived: [],
        .duplicate: [],
    ]

    /// Whether a job in `from` (nil: the job does not exist yet) may move to `to`.
    public static func isLegal(from: JobState?, to: JobState) -> Bool {
        guard let from else { return to == initialState }
        return legalTargets(from: from).contains(to)
    }

    /// The states a job in `state` may move to.
    public static func legalTargets(from state: JobState) -> Set<JobState> {
        table[state] ?? []
    }
}
