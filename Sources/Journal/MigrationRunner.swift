import GRDB
import SystemSupport

/// Applies the embedded migrations in version order, each exactly once and each in its
/// own transaction, recording it in `schema_migrations` (created by migration 1).
struct MigrationRunner {
    let migrations: [Migration]
    let path: String

    /// The applied (version, name) pairs; empty for a database no migration has touched.
    static func applied(_ db: Database) throws -> [Int: String] {
        guard try db.tableExists("schema_migrations") else { return [:] }
        var applied: [Int: String] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT version, name FROM schema_migrations") {
            let version: Int = try row.decode(atIndex: 0)
            let name: String = try row.decode(atIndex: 1)
            applied[version] = name
        }
        return applied
    }

    func migrate(_ writer: DatabasePool) throws {
        try validateOrder()
        let applied = try writer.read { try Self.applied($0) }
        try checkKnown(applied)
        for migration in migrations where applied[migration.version] == nil {
            do {
                try writer.write { db in
                    try db.execute(sql: migration.sql)
                    try db.execute(
                        sql: "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                        arguments: [migration.version, migration.name, Timestamp.now()])
                }
            } catch let error as DatabaseError {
                throw JournalError.migrationFailed(
                    path: path, version: migration.version, name: migration.name,
                    message: error.message ?? error.description)
            }
        }
    }

    /// For readers, which must not change the database: every migration must be there.
    func requireCurrent(_ reader: any DatabaseReader) throws {
        try validateOrder()
        let applied = try reader.read { try Self.applied($0) }
        try checkKnown(applied)
        let missing = migrations.filter { applied[$0.version] == nil }
        if let first = missing.first {
            throw JournalError.schemaMismatch(
                path: path,
                message: "schema migration \(first.version) (\(first.name)) is not applied yet; "
                    + "start the hyper2kvm daemon once with this version to upgrade the journal")
        }
    }

    private func validateOrder() throws {
        for (earlier, later) in zip(migrations, migrations.dropFirst()) where later.version <= earlier.version {
            throw JournalError.migrationFailed(
                path: path, version: later.version, name: later.name,
                message: "embedded migrations are out of order after version \(earlier.version)")
        }
    }

    /// A version this binary does not know, or one recorded under another name, means
    /// the journal was written by a different build: refuse rather than guess.
    private func checkKnown(_ applied: [Int: String]) throws {
        let known = Dictionary(migrations.map { ($0.version, $0.name) }, uniquingKeysWith: { first, _ in first })
        for (version, name) in applied.sorted(by: { $0.key < $1.key }) {
            guard let knownName = known[version] else {
                throw JournalError.schemaMismatch(
                    path: path,
                    message: "schema migration \(version) (\(name)) was applied by a newer hyper2kvm; "
                        + "this binary knows migrations up to \(migrations.last?.version ?? 0)")
            }
            guard knownName == name else {
                throw JournalError.schemaMismatch(
                    path: path,
                    message: "schema migration \(version) is recorded as '\(name)' but this binary calls it '\(knownName)'")
            }
        }
    }
}
