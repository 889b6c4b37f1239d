import GRDB

extension JobJournal {
    public func job(_ id: Int64) throws -> JobRecord? {
        try readSnapshot { db in try fetchJob(db, id: id) }
    }

    public func jobs(in states: Set<JobState>) throws -> [JobRecord] {
        guard !states.isEmpty else { return [] }
        let names = states.map(\.rawValue).sorted()
        let placeholders = Array(repeating: "?", count: names.count).joined(separator: ", ")
        return try fetchJobs(
            where: "state IN (\(placeholders))", arguments: StatementArguments(names))
    }

    public func allJobs() throws -> [JobRecord] {
        try fetchJobs(where: "1", arguments: [])
    }

    /// Converted jobs (published or archived, with a recorded source SHA-256) whose source
    /// had `size` bytes: the only candidates a new file of that size can duplicate.
    public func convertedJobs(withSourceSize size: Int64) throws -> [JobRecord] {
        try fetchJobs(where: "source_size = ? AND source_sha256 IS NOT NULL AND state IN ('published', 'archived')",
                      arguments: [size])
    }

    public func jobs(matchingIdentity identity: SourceIdentity) throws -> [JobRecord] {
        try fetchJobs(
            where: """
                source_dev = ? AND source_inode = ? AND source_size = ?
                AND source_mtime_ns = ? AND source_ctime_ns = ?
                """,
            arguments: [
                Int64(bitPattern: identity.device), Int64(bitPattern: identity.inode),
                identity.size, identity.mtimeNanoseconds, identity.ctimeNanoseconds,
            ])
    }

    public func jobs(withSourceSHA256 sha256: String) throws -> [JobRecord] {
        let normalized = try SHA256Text.validated(sha256, field: "source SHA-256")
        return try fetchJobs(where: "source_sha256 = ?", arguments: [normalized])
    }

    public func history(job: Int64) throws -> [TransitionRecord] {
        try readSnapshot { db in
            try Row.fetchAll(
                db.cachedStatement(sql: "SELECT \(TransitionRecord.columns) FROM transitions WHERE job_id = ? ORDER BY id"),
                arguments: [job]
            ).map { try TransitionRecord(row: $0, journalPath: path) }
        }
    }

    public func artifacts(job: Int64) throws -> [ArtifactRecord] {
        try readSnapshot { db in
            try Row.fetchAll(
                db.cachedStatement(sql: "SELECT \(ArtifactRecord.columns) FROM artifacts WHERE job_id = ? ORDER BY stage, name"),
                arguments: [job]
            ).map { try ArtifactRecord(row: $0) }
        }
    }

    func fetchJob(_ db: Database, id: Int64) throws -> JobRecord? {
        try Row.fetchOne(
            db.cachedStatement(sql: "SELECT \(JobRecord.columns) FROM jobs WHERE id = ?"), arguments: [id]
        ).map { try JobRecord(row: $0, journalPath: path) }
    }

    private func fetchJobs(where condition: String, arguments: StatementArguments) throws -> [JobRecord] {
        try readSnapshot { db in
            try Row.fetchAll(
                db, sql: "SELECT \(JobRecord.columns) FROM jobs WHERE \(condition) ORDER BY id", arguments: arguments
            ).map { try JobRecord(row: $0, journalPath: path) }
        }
    }
}
