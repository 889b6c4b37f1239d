import GRDB

// Decoding of the public records from rows. Kept out of the records themselves so the
// public types do not depend on GRDB (a second backend decodes its own rows).

extension JobRecord {
    static let columns = """
        id, source_path, source_kind, source_dev, source_inode, source_size, source_mtime_ns,
        source_ctime_ns, source_sha256, vm_name, state, stage, attempt, progress, output_path,
        error, created_at, updated_at, stalled_at
        """

    init(row: Row, journalPath: String) throws {
        let id: Int64 = try row.decode(forColumn: "id")
        let stateText: String = try row.decode(forColumn: "state")
        guard let state = JobState(rawValue: stateText) else {
            throw JournalError.damaged(path: journalPath, message: "job \(id) has unknown state '\(stateText)'")
        }
        self.init(
            id: id,
            sourcePath: try row.decode(forColumn: "source_path"),
            sourceKind: try row.decode(forColumn: "source_kind"),
            identity: SourceIdentity(
                device: UInt64(bitPattern: try row.decode(Int64.self, forColumn: "source_dev")),
                inode: UInt64(bitPattern: try row.decode(Int64.self, forColumn: "source_inode")),
                size: try row.decode(forColumn: "source_size"),
                mtimeNanoseconds: try row.decode(forColumn: "source_mtime_ns"),
                ctimeNanoseconds: try row.decode(forColumn: "source_ctime_ns")),
            sourceSHA256: try row.decode(forColumn: "source_sha256"),
            vmName: try row.decode(forColumn: "vm_name"),
            state: state,
            stage: try row.decode(forColumn: "stage"),
            attempt: try row.decode(forColumn: "attempt"),
            progress: try row.decode(forColumn: "progress"),
            outputPath: try row.decode(forColumn: "output_path"),
            error: try row.decode(forColumn: "error"),
            createdAt: try row.decode(forColumn: "created_at"),
            updatedAt: try row.decode(forColumn: "updated_at"),
            stalledSince: try row.decode(forColumn: "stalled_at"))
    }
}

extension TransitionRecord {
    static let columns = "id, job_id, from_state, to_state, stage, attempt, at, detail"

    init(row: Row, journalPath: String) throws {
        let id: Int64 = try row.decode(forColumn: "id")
        let fromText: String? = try row.decode(forColumn: "from_state")
        let toText: String = try row.decode(forColumn: "to_state")
        let from = try fromText.map { text in
            guard let state = JobState(rawValue: text) else {
                throw JournalError.damaged(path: journalPath, message: "transition \(id) has unknown state '\(text)'")
            }
            return state
        }
        guard let to = JobState(rawValue: toText) else {
            throw JournalError.damaged(path: journalPath, message: "transition \(id) has unknown state '\(toText)'")
        }
        self.init(
            id: id,
            jobID: try row.decode(forColumn: "job_id"),
            from: from,
            to: to,
            stage: try row.decode(forColumn: "stage"),
            attempt: try row.decode(forColumn: "attempt"),
            at: try row.decode(forColumn: "at"),
            detail: try row.decode(forColumn: "detail"))
    }
}

extension ArtifactRecord {
    static let columns = "id, job_id, stage, name, path, size, sha256, attempt, recorded_at, verified_at"

    init(row: Row) throws {
        self.init(
            id: try row.decode(forColumn: "id"),
            jobID: try row.decode(forColumn: "job_id"),
            stage: try row.decode(forColumn: "stage"),
            name: try row.decode(forColumn: "name"),
            path: try row.decode(forColumn: "path"),
            size: try row.decode(forColumn: "size"),
            sha256: try row.decode(forColumn: "sha256"),
            attempt: try row.decode(forColumn: "attempt"),
            recordedAt: try row.decode(forColumn: "recorded_at"),
            verifiedAt: try row.decode(forColumn: "verified_at"))
    }
}
