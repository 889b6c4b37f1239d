import GRDB

/// The SQLite settings in force on the journal's writing connection, for tests and `status`.
public struct JournalSettings: Codable, Sendable, Hashable {
    /// "wal" when the journal is durable as designed.
    public var journalMode: String
    /// 2 (FULL) or 3 (EXTRA) on a writable journal.
    public var synchronous: Int
    public var foreignKeys: Bool
    public var busyTimeoutMilliseconds: Int
}

extension JobJournal {
    /// Reads the pragmas back from the connection that commits transitions (for a journal
    /// opened for reading: from its own read-only connection).
    public func settings() throws -> JournalSettings {
        do {
            return try database.writeWithoutTransaction { db in
                JournalSettings(
                    journalMode: try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "",
                    synchronous: try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1,
                    foreignKeys: try Int.fetchOne(db, sql: "PRAGMA foreign_keys") == 1,
                    busyTimeoutMilliseconds: try Int.fetchOne(db, sql: "PRAGMA busy_timeout") ?? 0)
            }
        } catch let error as DatabaseError {
            throw JournalError.database(path: path, message: error.message ?? error.description)
        }
    }
}
