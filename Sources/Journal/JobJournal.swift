import Foundation
import GRDB

/// The SQLite job journal in `<state_dir>/journal.sqlite`: WAL, `synchronous=FULL`,
/// one writer process (guarded by `<state_dir>/journal.lock`), any number of readers.
public final class JobJournal: JobJournaling {
    public static let databaseFileName = "journal.sqlite"
    public static let lockFileName = "journal.lock"

    /// Path of the database file.
    public let path: String
    let database: DatabasePool
    /// nil for a journal opened for reading.
    private let ownerLock: OwnerLock?
    /// Which transitions enqueue notifications, and whom to wake after they commit.
    let outboxHook = OutboxHook()

    public var isWritable: Bool { ownerLock != nil }

    private init(path: String, database: DatabasePool, ownerLock: OwnerLock?) {
        self.path = path
        self.database = database
        self.ownerLock = ownerLock
    }

    deinit {
        // Close SQLite before another JobJournal in this process can take the lock.
        try? database.close()
        ownerLock?.release()
    }

    // MARK: - Opening

    /// Opens (creating if needed) the journal as its only writer.
    ///
    /// Fails with `.locked` if another process or `JobJournal` owns it, `.damaged` if the
    /// integrity check fails, `.notDurable` if WAL and `synchronous=FULL` cannot be set.
    public static func openForWriting(stateDirectory: URL) throws -> JobJournal {
        let directory = stateDirectory.path
        let path = stateDirectory.appendingPathComponent(databaseFileName).path
        let createdDirectory = try createDirectoryIfMissing(directory, journalPath: path)
        let lock = try OwnerLock.acquire(
            path: stateDirectory.appendingPathComponent(lockFileName).path, journalPath: path)
        do {
            let existed = FileManager.default.fileExists(atPath: path)
            if existed {
                // Checked on a plain connection before the pool opens, because opening a
                // pool may write (GRDB touches the WAL) and a damaged file must not be written.
                try checkIntegrity(path: path)
            }
            let pool = try DatabasePool(path: path, configuration: configuration(readonly: false))
            try enforceDurability(pool, path: path)
            try MigrationRunner(migrations: embeddedMigrations, path: path).migrate(pool)
            if !existed {
                try DirectorySync.sync(directory)
                if createdDirectory {
                    try DirectorySync.sync(stateDirectory.deletingLastPathComponent().path)
                }
            }
            return JobJournal(path: path, database: pool, ownerLock: lock)
        } catch {
            lock.release()
            throw openError(error, path: path)
        }
    }

    /// Opens an existing journal read-only, without the owner lock, for `status`,
    /// `history` and other commands that run while the daemon writes.
    public static func openForReading(stateDirectory: URL) throws -> JobJournal {
        let path = stateDirectory.appendingPathComponent(databaseFileName).path
        guard FileManager.default.fileExists(atPath: path) else {
            throw JournalError.notFound(path: path)
        }
        do {
            let pool = try DatabasePool(path: path, configuration: configuration(readonly: true))
            try pool.read { db in try quickCheck(db, path: path) }
            try MigrationRunner(migrations: embeddedMigrations, path: path).requireCurrent(pool)
            return JobJournal(path: path, database: pool, ownerLock: nil)
        } catch {
            throw openError(error, path: path)
        }
    }

    /// Copies the WAL into the database file and truncates it. For idle moments: long
    /// readers and a busy writer otherwise let the WAL grow without bound.
    public func checkpoint() throws {
        guard isWritable else { throw JournalError.readOnly(path: path) }
        do {
            _ = try database.writeWithoutTransaction { db in try db.checkpoint(.truncate) }
        } catch {
            throw operationError(error)
        }
    }

    /// Closes the database and releases the owner lock. Later calls fail.
    public func close() throws {
        defer { ownerLock?.release() }
        do {
            try database.close()
        } catch {
            throw operationError(error)
        }
    }

    private static func configuration(readonly: Bool) -> Configuration {
        var configuration = Configuration()
        configuration.readonly = readonly
        configuration.foreignKeysEnabled = true
        // Readers (status, history) and the writer wait for each other's brief locks
        // instead of failing; WAL keeps those waits short.
        // (GRDB gives pool readers the same 10 s timeout.)
        configuration.busyMode = .timeout(10)
        return configuration
    }

    /// GRDB sets WAL databases to `synchronous=NORMAL` while opening the pool, which loses
    /// acknowledged commits on power loss; so FULL is set afterwards and read back.
    private static func enforceDurability(_ pool: DatabasePool, path: String) throws {
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            // Bounds the -wal file left after a checkpoint: SQLite truncates it to this size, not to zero.
            try db.execute(sql: "PRAGMA journal_size_limit = 67108864")
            let synchronous = try Int.fetchOne(db, sql: "PRAGMA synchronous")
            guard synchronous == 2 || synchronous == 3 else {
                throw JournalError.notDurable(
                    path: path,
                    message: "PRAGMA synchronous is \(synchronous.map(String.init) ?? "unknown") after setting FULL (need 2 or 3)")
            }
            let mode = try String.fetchOne(db, sql: "PRAGMA journal_mode")
            guard mode == "wal" else {
                throw JournalError.notDurable(path: path, message: "journal_mode is \(mode ?? "unknown"), not wal")
            }
            guard try Int.fetchOne(db, sql: "PRAGMA foreign_keys") == 1 else {
                throw JournalError.cannotOpen(path: path, message: "foreign keys could not be enabled")
            }
        }
    }

    private static func checkIntegrity(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        let queue = try DatabaseQueue(path: path, configuration: configuration)
        try queue.read { db in try quickCheck(db, path: path) }
        try queue.close()
    }

    private static func quickCheck(_ db: Database, path: String) throws {
        let report = try String.fetchAll(db, sql: "PRAGMA quick_check")
        guard report == ["ok"] else {
            let shown = report.prefix(3).joined(separator: "; ")
            let more = report.count > 3 ? " (and \(report.count - 3) more problems)" : ""
            throw JournalError.damaged(path: path, message: "integrity check failed: \(shown)\(more)")
        }
    }

    /// Returns whether it had to create the directory.
    private static func createDirectoryIfMissing(_ directory: String, journalPath: String) throws -> Bool {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw JournalError.cannotOpen(path: journalPath, message: "state directory \(directory) is not a directory")
            }
            return false
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw JournalError.cannotOpen(
                path: journalPath, message: "cannot create state directory \(directory): \(error.localizedDescription)")
        }
        return true
    }

    private static func openError(_ error: any Error, path: String) -> any Error {
        if let error = error as? JournalError { return error }
        if let error = error as? DatabaseError {
            switch error.resultCode {
            case .SQLITE_CORRUPT, .SQLITE_NOTADB:
                return JournalError.damaged(path: path, message: error.message ?? error.description)
            default:
                return JournalError.cannotOpen(path: path, message: error.message ?? error.description)
            }
        }
        return JournalError.cannotOpen(path: path, message: String(describing: error))
    }

    // MARK: - Running operations

    /// Runs `body` in one `BEGIN IMMEDIATE` transaction; any throw rolls all of it back.
    func writeTransaction<T>(_ body: (Database) throws -> T) throws -> T {
        guard isWritable else { throw JournalError.readOnly(path: path) }
        // The commit is synchronous (fsync of the WAL): its latency is what every transition waits for.
        let started = ContinuousClock.now
        defer { JournalMetrics.commitLatency(since: started) }
        do {
            return try database.write(body)
        } catch {
            throw operationError(error)
        }
    }

    func readSnapshot<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try database.read(body)
        } catch {
            throw operationError(error)
        }
    }

    private func operationError(_ error: any Error) -> any Error {
        if let error = error as? JournalError { return error }
        if let error = error as? DatabaseError {
            switch error.resultCode {
            case .SQLITE_CORRUPT, .SQLITE_NOTADB:
                return JournalError.damaged(path: path, message: error.message ?? error.description)
            default:
                return JournalError.database(path: path, message: error.message ?? error.description)
            }
        }
        return error
    }
}
