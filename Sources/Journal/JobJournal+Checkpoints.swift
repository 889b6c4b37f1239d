import Foundation
import GRDB
import SystemSupport

/// Checkpoints inside a stage (migration 3): one JSON value per (job, stage, name), replaced
/// as the stage moves on. Each write is one committed transaction, so a value read back
/// after a crash is one the stage wrote whole.
extension JobJournal {
    public func checkpoint(job: Int64, stage: String, name: String) throws -> String? {
        try readSnapshot { db in
            try String.fetchOne(db, sql: "SELECT value FROM stage_checkpoints WHERE job_id = ? AND stage = ? AND name = ?",
                                arguments: [job, stage, name])
        }
    }

    public func setCheckpoint(job: Int64, stage: String, name: String, value: String) throws {
        try writeTransaction { db in
            try db.cachedStatement(sql: """
                INSERT INTO stage_checkpoints (job_id, stage, name, value, updated_at) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (job_id, stage, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
                """).execute(arguments: [job, stage, name, value, Timestamp.now()])
        }
    }

    /// Every checkpoint of a job (for `status`), by stage and name.
    public func checkpoints(job: Int64) throws -> [(stage: String, name: String, value: String)] {
        try readSnapshot { db in
            try Row.fetchAll(db, sql: "SELECT stage, name, value FROM stage_checkpoints WHERE job_id = ? ORDER BY stage, name",
                             arguments: [job]).map { (stage: $0["stage"], name: $0["name"], value: $0["value"]) }
        }
    }
}
