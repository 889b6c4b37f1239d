/// Where a job is in its life. The raw values are what the journal stores and what
/// `status --json` / `history --json` print, so they never change once released.
public enum JobState: String, Codable, Sendable, CaseIterable {
    case discovered
    case stable
    case claimed
    case stageStarted = "stage-started"
    case stageCompleted = "stage-completed"
    case stageFailed = "stage-failed"
    case stageSkipped = "stage-skipped"
    case waitingForSpace = "waiting-for-space"
    case interrupted
    case resumed
    case retrying
    case failed
    case duplicate
    case published
    case archived

    /// States that end a job for good: no transition leaves them.
    public var isTerminal: Bool {
        TransitionRules.legalTargets(from: self).isEmpty
    }

    /// Transitions into these states are about one stage, so they must name it.
    public var requiresStage: Bool {
        switch self {
        case .stageStarted, .stageCompleted, .stageFailed, .stageSkipped: true
        default: false
        }
    }
}
