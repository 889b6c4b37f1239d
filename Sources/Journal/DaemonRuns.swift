import Foundation
import GRDB
import SystemSupport

/// A daemon's run as recorded in the journal (for `status`).
public struct DaemonRun: Codable, Sendable, Hashable {
    public var id: Int64
    public var pid: Int32
    public var startedAt: String
    public var config: [String]
    public var watchDir: String
    public var outputDir: String
    public var stoppedAt: String?
}

extension JobJournal {
    /// Records that a daemon started on this journal; returns the run's id.
    public func recordDaemonStart(pid: Int32, config: [String], watchDir: String, outputDir: String) throws -> Int64 {
        try writeTransaction { db in
            try db.execute(sql: "INSERT INTO daemon_runs (pid, started_at, config, watch_dir, output_dir) VALUES (?, ?, ?, ?, ?)",
                           arguments: [pid, Timestamp.now(), config.joined(separator: "\n"), watchDir, outputDir])
            return db.lastInsertedRowID
        }
    }

    public func recordDaemonStop(run: Int64) throws {
        try writeTransaction { db in
            try db.execute(sql: "UPDATE daemon_runs SET stopped_at = ? WHERE id = ?", arguments: [Timestamp.now(), run])
        }
    }

    /// The most recent run, if a daemon ever ran on this journal.
    public func latestDaemonRun() throws -> DaemonRun? {
        try readSnapshot { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM daemon_runs ORDER BY id DESC LIMIT 1") else { return nil }
            let config: String = row["config"]
            return DaemonRun(id: row["id"], pid: row["pid"], startedAt: row["started_at"],
                             config: config.isEmpty ? [] : config.components(separatedBy: "\n"),
                             watchDir: row["watch_dir"], outputDir: row["output_dir"], stoppedAt: row["stopped_at"])
        }
    }
}
