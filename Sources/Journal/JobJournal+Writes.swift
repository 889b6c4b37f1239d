import Foundation
import GRDB
import SystemSupport

extension JobJournal {
    public func createJob(_ job: NewJob, detail: String?) throws -> JobRecord {
        let sha256 = try job.sourceSHA256.map { try SHA256Text.validated($0, field: "source SHA-256") }
        return try writeTransaction { db in
            let now = Timestamp.now()
            let identity = job.identity
            try db.cachedStatement(sql: """
                INSERT INTO jobs (source_path, source_kind, source_dev, source_inode, source_size,
                                  source_mtime_ns, source_ctime_ns, source_sha256, vm_name,
                                  state, stage, attempt, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, ?, ?)
                """).execute(arguments: [
                    job.sourcePath, job.sourceKind,
                    Int64(bitPattern: identity.device), Int64(bitPattern: identity.inode),
                    identity.size, identity.mtimeNanoseconds, identity.ctimeNanoseconds,
                    sha256, job.vmName, TransitionRules.initialState.rawValue, now, now,
                ])
            let id = db.lastInsertedRowID
            _ = try insertTransition(
                db, job: id, from: nil, to: TransitionRules.initialState, stage: nil, attempt: 0,
                at: now, detail: detail)
            guard let record = try fetchJob(db, id: id) else { throw JournalError.unknownJob(id) }
            return record
        }
    }

    @discardableResult
    public func transition(job: Int64, to state: JobState, stage: String?, detail: String?) throws -> TransitionRecord {
        let record = try writeTransaction { db in
            try applyTransition(db, job: job, to: state, stage: stage, detail: detail, at: Timestamp.now())
        }
        outboxHook.signalIfEnqueued()
        if state == .stageStarted { outboxHook.signalStageStarted() }
        return record
    }

    @discardableResult
    public func completeStage(job: Int64, stage: String, artifacts: [NewArtifact], detail: String?) throws -> TransitionRecord {
        let checksums = try artifacts.map { artifact in
            try artifact.sha256.map { try SHA256Text.validated($0, field: "SHA-256 of artifact \(artifact.name)") }
        }
        return try writeTransaction { db in
            let now = Timestamp.now()
            let completion = try applyTransition(
                db, job: job, to: .stageCompleted, stage: stage, detail: detail, at: now)
            // Outputs of an earlier attempt of this stage are superseded by this one; keeping
            // them would make the rerun after a failed verification hit UNIQUE (docs/crash-safety.md, row 5).
            try db.cachedStatement(sql: "DELETE FROM artifacts WHERE job_id = ? AND stage = ?")
                .execute(arguments: [job, stage])
            let insert = try db.cachedStatement(sql: """
                INSERT INTO artifacts (job_id, stage, name, path, size, sha256, attempt, recorded_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """)
            for (artifact, sha256) in zip(artifacts, checksums) {
                do {
                    try insert.execute(arguments: [
                        job, stage, artifact.name, artifact.path, artifact.size, sha256,
                        completion.attempt, now,
                    ])
                } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
                    throw JournalError.duplicateArtifact(job: job, stage: stage, name: artifact.name)
                } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_CHECK {
                    throw JournalError.invalidValue(
                        field: "artifact \(artifact.name)",
                        message: "size \(artifact.size) is negative")
                }
            }
            return completion
        }
    }

    public func setProgress(job: Int64, fraction: Double) throws {
        guard fraction.isFinite, (0...1).contains(fraction) else {
            throw JournalError.invalidValue(field: "progress", message: "\(fraction) is not between 0 and 1")
        }
        let endedStall = try writeTransaction { db in
            let wasStalled = try Bool.fetchOne(db, sql: "SELECT stalled_at IS NOT NULL AND progress IS NOT ? FROM jobs WHERE id = ?",
                                               arguments: [fraction, job]) ?? false
            // Only a changed fraction is progress: a stage that keeps reporting the same value
            // is stalled all the same (markStalledJobs), and a change ends a stall.
            let now = Timestamp.now()
            try db.cachedStatement(sql: """
                UPDATE jobs SET progressed_at = CASE WHEN progress IS ? THEN progressed_at ELSE ? END,
                                stalled_at = CASE WHEN progress IS ? THEN stalled_at ELSE NULL END,
                                progress = ?, updated_at = ? WHERE id = ?
                """).execute(arguments: [fraction, now, fraction, fraction, now, job])
            guard db.changesCount == 1 else { throw JournalError.unknownJob(job) }
            return wasStalled
        }
        // The stall watch may be sleeping without a timer: this stage can stall again.
        if endedStall { outboxHook.signalStageStarted() }
    }

    public func updateJob(job: Int64, vmName: String?, outputPath: String?, error: String?,
                          sourceSHA256: String?) throws {
        let sha256 = try sourceSHA256.map { try SHA256Text.validated($0, field: "source SHA-256") }
        var assignments: [String] = []
        var arguments: [(any DatabaseValueConvertible)?] = []
        for (column, value) in [("vm_name", vmName), ("output_path", outputPath), ("error", error),
                                ("source_sha256", sha256)] {
            if let value {
                assignments.append("\(column) = ?")
                arguments.append(value)
            }
        }
        try writeTransaction { db in
            assignments.append("updated_at = ?")
            arguments.append(Timestamp.now())
            arguments.append(job)
            try db.execute(
                sql: "UPDATE jobs SET \(assignments.joined(separator: ", ")) WHERE id = ?",
                arguments: StatementArguments(arguments))
            guard db.changesCount == 1 else { throw JournalError.unknownJob(job) }
        }
    }

    public func markVerified(job: Int64, stage: String, name: String, at date: Date) throws {
        try writeTransaction { db in
            try db.cachedStatement(sql: """
                UPDATE artifacts SET verified_at = ? WHERE job_id = ? AND stage = ? AND name = ?
                """).execute(arguments: [Timestamp.format(date), job, stage, name])
            guard db.changesCount == 1 else {
                throw JournalError.unknownArtifact(job: job, stage: stage, name: name)
            }
        }
    }

    // MARK: - The state machine, applied inside a write transaction

    /// Checks the move against `TransitionRules` and the stage in progress, then writes the
    /// transition row and the job's new state. Throws before writing anything if illegal.
    private func applyTransition(_ db: Database, job: Int64, to state: JobState, stage: String?,
                                 detail: String?, at now: String) throws -> TransitionRecord {
        guard let current = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT state, stage, attempt FROM jobs WHERE id = ?"), arguments: [job])
        else {
            throw JournalError.unknownJob(job)
        }
        let stateText: String = try current.decode(atIndex: 0)
        guard let from = JobState(rawValue: stateText) else {
            throw JournalError.damaged(path: path, message: "job \(job) has unknown state '\(stateText)'")
        }
        let currentStage: String? = try current.decode(atIndex: 1)
        let currentAttempt: Int = try current.decode(atIndex: 2)

        guard TransitionRules.isLegal(from: from, to: state) else {
            throw JournalError.illegalTransition(job: job, from: from, to: state, stage: stage)
        }

        let rowStage: String?
        let attempt: Int
        switch state {
        case .stageStarted, .stageSkipped:
            guard let stage, !stage.isEmpty else {
                throw JournalError.stageMismatch(job: job, to: state, started: currentStage, given: stage)
            }
            let earlierStarts = try Int.fetchOne(
                db.cachedStatement(sql: """
                    SELECT count(*) FROM transitions WHERE job_id = ? AND stage = ? AND to_state = ?
                    """),
                arguments: [job, stage, JobState.stageStarted.rawValue]) ?? 0
            rowStage = stage
            attempt = earlierStarts + 1
        case .stageCompleted, .stageFailed:
            guard let stage, stage == currentStage else {
                throw JournalError.stageMismatch(job: job, to: state, started: currentStage, given: stage)
            }
            rowStage = stage
            attempt = currentAttempt
        default:
            rowStage = stage ?? currentStage
            attempt = currentAttempt
        }

        let record = try insertTransition(
            db, job: job, from: from, to: state, stage: rowStage, attempt: attempt, at: now, detail: detail)
        if state == .stageStarted || state == .stageSkipped {
            // A new stage run: its stage and attempt become the job's, its progress starts over.
            try db.cachedStatement(sql: """
                UPDATE jobs SET state = ?, stage = ?, attempt = ?, progress = NULL, progressed_at = ?,
                                stalled_at = NULL, updated_at = ? WHERE id = ?
                """).execute(arguments: [state.rawValue, rowStage, attempt, now, now, job])
        } else {
            // Any transition ends a stall: the job moved.
            try db.cachedStatement(sql: "UPDATE jobs SET state = ?, stalled_at = NULL, updated_at = ? WHERE id = ?")
                .execute(arguments: [state.rawValue, now, job])
        }
        // The notification this transition causes commits with it, or not at all.
        try enqueueNotifications(db, for: record)
        return record
    }

    private func insertTransition(_ db: Database, job: Int64, from: JobState?, to: JobState, stage: String?,
                                  attempt: Int, at now: String, detail: String?) throws -> TransitionRecord {
        try db.cachedStatement(sql: """
            INSERT INTO transitions (job_id, from_state, to_state, stage, attempt, at, detail)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [job, from?.rawValue, to.rawValue, stage, attempt, now, detail])
        return TransitionRecord(
            id: db.lastInsertedRowID, jobID: job, from: from, to: to, stage: stage,
            attempt: attempt, at: now, detail: detail)
    }
}

/// SHA-256 digests as the journal stores them: 64 lowercase hex digits.
enum SHA256Text {
    static func validated(_ text: String, field: String) throws -> String {
        let lowered = text.lowercased()
        guard lowered.utf8.count == 64, lowered.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            throw JournalError.invalidValue(field: field, message: "'\(text)' is not 64 hexadecimal digits")
        }
        return lowered
    }
}
