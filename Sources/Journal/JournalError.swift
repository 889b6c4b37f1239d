/// Everything the journal can refuse or fail with. Each case names the journal file
/// (or the job) and says what is wrong, because these reach the operator verbatim.
public enum JournalError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Another process (or another `JobJournal` in this one) owns the journal for writing.
    case locked(path: String, holderPID: Int32?)
    /// The database file failed its integrity check or is not a database.
    case damaged(path: String, message: String)
    /// WAL or `synchronous=FULL` could not be put in force, so commits would not survive power loss.
    case notDurable(path: String, message: String)
    /// The state machine does not allow this transition; nothing was written.
    case illegalTransition(job: Int64, from: JobState?, to: JobState, stage: String?)
    /// A stage transition named a different stage than the one in progress, or none.
    case stageMismatch(job: Int64, to: JobState, started: String?, given: String?)
    case unknownJob(Int64)
    case unknownArtifact(job: Int64, stage: String, name: String)
    /// One completion listed two artifacts with the same name; nothing was written.
    case duplicateArtifact(job: Int64, stage: String, name: String)
    case migrationFailed(path: String, version: Int, name: String, message: String)
    /// The database's schema is not the one this binary was built with.
    case schemaMismatch(path: String, message: String)
    /// `openForReading` found no journal (no daemon has run with this state directory).
    case notFound(path: String)
    case cannotOpen(path: String, message: String)
    /// A write was attempted through a journal opened with `openForReading`.
    case readOnly(path: String)
    /// A caller passed a value the journal cannot store (bad SHA-256, progress out of range…).
    case invalidValue(field: String, message: String)
    /// Any other SQLite failure during an operation.
    case database(path: String, message: String)

    public var description: String {
        switch self {
        case let .locked(path, pid?):
            return "journal \(path) is in use by another hyper2kvm process (pid \(pid)); "
                + "only one daemon may own a state directory"
        case let .locked(path, nil):
            return "journal \(path) is in use by another hyper2kvm process (pid unknown); "
                + "only one daemon may own a state directory"
        case let .damaged(path, message):
            return "journal \(path) is damaged: \(message). Restore it from a backup or move it "
                + "aside; hyper2kvm will not run on a damaged journal"
        case let .notDurable(path, message):
            return "journal \(path) cannot be made crash-safe: \(message)"
        case let .illegalTransition(job, from, to, stage):
            let fromText = from?.rawValue ?? "(new job)"
            let stageText = stage.map { " (stage \($0))" } ?? ""
            return "job \(job): illegal transition \(fromText) -> \(to.rawValue)\(stageText)"
        case let .stageMismatch(job, to, started, given):
            return "job \(job): \(to.rawValue) names stage \(given.map { "'\($0)'" } ?? "(none)") "
                + "but the stage in progress is \(started.map { "'\($0)'" } ?? "(none)")"
        case let .unknownJob(id):
            return "job \(id) is not in the journal"
        case let .unknownArtifact(job, stage, name):
            return "job \(job) has no artifact '\(name)' recorded for stage '\(stage)'"
        case let .duplicateArtifact(job, stage, name):
            return "job \(job), stage '\(stage)': artifact name '\(name)' is listed twice"
        case let .migrationFailed(path, version, name, message):
            return "journal \(path): migration \(version) (\(name)) failed: \(message)"
        case let .schemaMismatch(path, message):
            return "journal \(path): \(message)"
        case let .notFound(path):
            return "no journal at \(path): no hyper2kvm daemon has run with this state directory "
                + "(check --state-dir or state_dir in the configuration)"
        case let .cannotOpen(path, message):
            return "cannot open journal \(path): \(message)"
        case let .readOnly(path):
            return "journal \(path) was opened for reading; writes need openForWriting"
        case let .invalidValue(field, message):
            return "invalid \(field): \(message)"
        case let .database(path, message):
            return "journal \(path): \(message)"
        }
    }
}
