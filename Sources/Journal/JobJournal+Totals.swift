import GRDB

/// Whole-journal figures for the daemon's metrics endpoint: read at each scrape, so the
/// counters it exports are the journal's own numbers, not a second bookkeeping that could drift.
public struct JournalTotals: Sendable, Equatable {
    /// Bytes of the sources whose `convert` stage completed (each read end to end once).
    public var sourceBytesConverted: Int64
    /// Bytes of every recorded artifact (disks, domain.xml, metadata, checksums).
    public var artifactBytes: Int64

    public init(sourceBytesConverted: Int64, artifactBytes: Int64) {
        self.sourceBytesConverted = sourceBytesConverted
        self.artifactBytes = artifactBytes
    }
}

extension JobJournal {
    public func totals() throws -> JournalTotals {
        try readSnapshot { db in
            let read = try Int64.fetchOne(db, sql: """
                SELECT COALESCE(SUM(source_size), 0) FROM jobs WHERE id IN
                    (SELECT job_id FROM transitions WHERE to_state = 'stage-completed' AND stage = 'convert')
                """) ?? 0
            let written = try Int64.fetchOne(db, sql: "SELECT COALESCE(SUM(size), 0) FROM artifacts") ?? 0
            return JournalTotals(sourceBytesConverted: read, artifactBytes: written)
        }
    }

    /// Transitions committed after `id`, oldest first, at most `limit`: how the metrics endpoint
    /// follows the journal without reading it all again at every scrape.
    public func transitions(after id: Int64, limit: Int) throws -> [TransitionRecord] {
        try readSnapshot { db in
            try Row.fetchAll(
                db.cachedStatement(sql: "SELECT \(TransitionRecord.columns) FROM transitions WHERE id > ? ORDER BY id LIMIT ?"),
                arguments: [id, limit]
            ).map { try TransitionRecord(row: $0, journalPath: path) }
        }
    }
}
