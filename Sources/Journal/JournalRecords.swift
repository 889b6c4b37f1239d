/// What identifies a source file on disk, from `stat(2)`. A job records it at discovery;
/// a later mismatch means the file changed under the job.
public struct SourceIdentity: Codable, Sendable, Hashable {
    public var device: UInt64
    public var inode: UInt64
    public var size: Int64
    public var mtimeNanoseconds: Int64
    public var ctimeNanoseconds: Int64

    public init(device: UInt64, inode: UInt64, size: Int64, mtimeNanoseconds: Int64, ctimeNanoseconds: Int64) {
        self.device = device
        self.inode = inode
        self.size = size
        self.mtimeNanoseconds = mtimeNanoseconds
        self.ctimeNanoseconds = ctimeNanoseconds
    }
}

/// A job to create: what the daemon knows about a queue file when it first sees it.
public struct NewJob: Sendable, Hashable {
    public var sourcePath: String
    /// The input kind as the daemon names it (e.g. "ova", "vmdk"); the journal does not interpret it.
    public var sourceKind: String
    public var identity: SourceIdentity
    /// Lowercase hex SHA-256 of the source, when `checksum` is on and it is already known.
    public var sourceSHA256: String?
    public var vmName: String?

    public init(sourcePath: String, sourceKind: String, identity: SourceIdentity,
                sourceSHA256: String? = nil, vmName: String? = nil) {
        self.sourcePath = sourcePath
        self.sourceKind = sourceKind
        self.identity = identity
        self.sourceSHA256 = sourceSHA256
        self.vmName = vmName
    }
}

/// One output of a completed stage, already fsynced and renamed to its final name.
public struct NewArtifact: Sendable, Hashable {
    /// Unique within (job, stage), e.g. "disk0.qcow2" or "domain.xml".
    public var name: String
    public var path: String
    public var size: Int64
    /// Lowercase hex SHA-256, or nil when `checksum` is off.
    public var sha256: String?

    public init(name: String, path: String, size: Int64, sha256: String?) {
        self.name = name
        self.path = path
        self.size = size
        self.sha256 = sha256
    }
}

/// A job as the journal holds it. `state`, `stage` and `attempt` are those of its last transition.
public struct JobRecord: Codable, Sendable, Hashable {
    public var id: Int64
    public var sourcePath: String
    public var sourceKind: String
    public var identity: SourceIdentity
    public var sourceSHA256: String?
    public var vmName: String?
    public var state: JobState
    /// The stage of the last stage transition (nil until the first one).
    public var stage: String?
    /// The attempt number of `stage` (0 until the first stage starts).
    public var attempt: Int
    /// Fraction of the current stage done, 0...1, when the stage reports it.
    public var progress: Double?
    public var outputPath: String?
    public var error: String?
    /// ISO 8601 UTC with milliseconds, see `Timestamp`.
    public var createdAt: String
    public var updatedAt: String
    /// Set while the stage in progress is stalled: when it was found to have made no progress
    /// for the configured time (`stalled_after_seconds`). Absent from JSON otherwise.
    public var stalledSince: String?

    public init(id: Int64, sourcePath: String, sourceKind: String, identity: SourceIdentity, sourceSHA256: String?,
                vmName: String?, state: JobState, stage: String?, attempt: Int, progress: Double?,
                outputPath: String?, error: String?, createdAt: String, updatedAt: String, stalledSince: String? = nil) {
        self.id = id
        self.sourcePath = sourcePath
        self.sourceKind = sourceKind
        self.identity = identity
        self.sourceSHA256 = sourceSHA256
        self.vmName = vmName
        self.state = state
        self.stage = stage
        self.attempt = attempt
        self.progress = progress
        self.outputPath = outputPath
        self.error = error
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.stalledSince = stalledSince
    }
}

/// One row of a job's history: a committed state change.
public struct TransitionRecord: Codable, Sendable, Hashable {
    /// Increases with commit order across the whole journal.
    public var id: Int64
    public var jobID: Int64
    /// nil on the row that created the job.
    public var from: JobState?
    public var to: JobState
    public var stage: String?
    /// For stage-started and stage-skipped rows: 1 + the earlier starts of the same stage.
    /// Other rows carry the attempt of the stage in progress (0 before any stage).
    public var attempt: Int
    /// ISO 8601 UTC with milliseconds.
    public var at: String
    public var detail: String?

    public init(id: Int64, jobID: Int64, from: JobState?, to: JobState, stage: String?, attempt: Int,
                at: String, detail: String?) {
        self.id = id
        self.jobID = jobID
        self.from = from
        self.to = to
        self.stage = stage
        self.attempt = attempt
        self.at = at
        self.detail = detail
    }
}

/// An output recorded with a stage completion.
public struct ArtifactRecord: Codable, Sendable, Hashable {
    public var id: Int64
    public var jobID: Int64
    public var stage: String
    public var name: String
    public var path: String
    public var size: Int64
    public var sha256: String?
    /// The stage attempt that produced it.
    public var attempt: Int
    public var recordedAt: String
    /// When `verify` (or resume) last re-hashed it and found it intact.
    public var verifiedAt: String?

    public init(id: Int64, jobID: Int64, stage: String, name: String, path: String, size: Int64,
                sha256: String?, attempt: Int, recordedAt: String, verifiedAt: String?) {
        self.id = id
        self.jobID = jobID
        self.stage = stage
        self.name = name
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.attempt = attempt
        self.recordedAt = recordedAt
        self.verifiedAt = verifiedAt
    }
}
