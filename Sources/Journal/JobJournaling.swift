import Foundation

/// The journal as the daemon uses it: transitions, artifacts, claims and queries.
///
/// Kept narrow on purpose so that a second backend (PostgreSQL for several hosts) is an
/// addition; `JobJournal` is the SQLite implementation.
public protocol JobJournaling: AnyObject, Sendable {
    /// Creates a job in state `discovered` and records that first transition with it.
    func createJob(_ job: NewJob, detail: String?) throws -> JobRecord

    /// Moves a job to `state` if the state machine allows it, recording the transition.
    @discardableResult
    func transition(job: Int64, to state: JobState, stage: String?, detail: String?) throws -> TransitionRecord

    /// Records `stage-completed` for the stage in progress together with its outputs,
    /// replacing outputs recorded by an earlier attempt of the same stage.
    @discardableResult
    func completeStage(job: Int64, stage: String, artifacts: [NewArtifact], detail: String?) throws -> TransitionRecord

    /// Records how far the current stage is (0...1). Not a transition.
    func setProgress(job: Int64, fraction: Double) throws

    /// Sets the given fields; nil fields are left as they are.
    func updateJob(job: Int64, vmName: String?, outputPath: String?, error: String?, sourceSHA256: String?) throws

    /// Records that an artifact was re-hashed and matched its recorded SHA-256.
    func markVerified(job: Int64, stage: String, name: String, at: Date) throws

    func job(_ id: Int64) throws -> JobRecord?
    func jobs(in states: Set<JobState>) throws -> [JobRecord]
    func allJobs() throws -> [JobRecord]
    /// The job's transitions in commit order.
    func history(job: Int64) throws -> [TransitionRecord]
    func artifacts(job: Int64) throws -> [ArtifactRecord]
    func jobs(matchingIdentity identity: SourceIdentity) throws -> [JobRecord]
    func jobs(withSourceSHA256 sha256: String) throws -> [JobRecord]
}

extension JobJournaling {
    @discardableResult
    public func transition(job: Int64, to state: JobState) throws -> TransitionRecord {
        try transition(job: job, to: state, stage: nil, detail: nil)
    }

    @discardableResult
    public func transition(job: Int64, to state: JobState, stage: String?) throws -> TransitionRecord {
        try transition(job: job, to: state, stage: stage, detail: nil)
    }

    @discardableResult
    public func transition(job: Int64, to state: JobState, detail: String?) throws -> TransitionRecord {
        try transition(job: job, to: state, stage: nil, detail: detail)
    }

    public func createJob(_ job: NewJob) throws -> JobRecord {
        try createJob(job, detail: nil)
    }

    public func updateJob(job: Int64, vmName: String? = nil, outputPath: String? = nil,
                          error: String? = nil) throws {
        try updateJob(job: job, vmName: vmName, outputPath: outputPath, error: error, sourceSHA256: nil)
    }

    public func markVerified(job: Int64, stage: String, name: String) throws {
        try markVerified(job: job, stage: stage, name: name, at: Date())
    }
}
