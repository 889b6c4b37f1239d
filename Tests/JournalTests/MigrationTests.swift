import Foundation
import TestSupport
import Testing
@testable import Journal

@Suite("Schema migrations")
struct MigrationTests {
    private static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test func embeddedMigrationsEqualTheFilesByteForByte() throws {
        let directory = Self.repositoryRoot.appendingPathComponent("migrations")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(".sql") }
            .sorted()
        #expect(!files.isEmpty)
        #expect(files == embeddedMigrations.map { String($0.fileName.dropFirst("migrations/".count)) },
                "migrations/ and EmbeddedMigrations.swift list different files: run scripts/embed-migrations")
        for migration in embeddedMigrations {
            let onDisk = try Data(contentsOf: Self.repositoryRoot.appendingPathComponent(migration.fileName))
            #expect(onDisk == Data(migration.sql.utf8),
                    "\(migration.fileName) differs from its embedded copy: run scripts/embed-migrations")
        }
    }

    @Test func embeddedVersionsStrictlyIncrease() {
        let versions = embeddedMigrations.map(\.version)
        #expect(versions == versions.sorted())
        #expect(Set(versions).count == versions.count)
        #expect(versions.first == 1)
    }

    @Test func migrationsApplyExactlyOnceAndAreRecorded() async throws {
        let directory = try Scratch()
        try JobJournal.openForWriting(stateDirectory: directory.url).close()
        let first = try await SQLiteShell.run(directory.databasePath, "SELECT version || '|' || name || '|' || applied_at FROM schema_migrations ORDER BY version")
        #expect(first.count == embeddedMigrations.count)
        #expect(first.first?.hasPrefix("1|initial|") == true)

        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        _ = try journal.createJob(Fixture.newJob())
        try journal.close()
        try JobJournal.openForWriting(stateDirectory: directory.url).close()
        let second = try await SQLiteShell.run(directory.databasePath, "SELECT version || '|' || name || '|' || applied_at FROM schema_migrations ORDER BY version")
        #expect(second == first, "a reopen re-applied or re-recorded a migration")
        #expect(try await SQLiteShell.run(directory.databasePath, "SELECT count(*) FROM jobs") == ["1"])
    }

    @Test func writerRefusesAJournalFromANewerBuild() async throws {
        let directory = try Scratch()
        try JobJournal.openForWriting(stateDirectory: directory.url).close()
        _ = try await SQLiteShell.run(directory.databasePath,
                                "INSERT INTO schema_migrations VALUES (9999, 'from_the_future', '2030-01-01T00:00:00.000Z')")
        #expect {
            try JobJournal.openForWriting(stateDirectory: directory.url)
        } throws: { error in
            guard case let .schemaMismatch(_, message)? = error as? JournalError else { return false }
            return message.contains("9999")
        }
    }

    @Test func readerRefusesAnOutdatedSchema() async throws {
        let directory = try Scratch()
        try JobJournal.openForWriting(stateDirectory: directory.url).close()
        _ = try await SQLiteShell.run(directory.databasePath, "DELETE FROM schema_migrations")
        #expect {
            try JobJournal.openForReading(stateDirectory: directory.url)
        } throws: { error in
            guard case .schemaMismatch? = error as? JournalError else { return false }
            return true
        }
    }
}
