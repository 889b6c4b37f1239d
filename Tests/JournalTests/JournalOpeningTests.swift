import Foundation
import TestSupport
import Testing
@testable import Journal

@Suite("Journal opening and durability")
struct JournalOpeningTests {
    @Test func writerRunsWALWithSynchronousFull() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        let settings = try journal.settings()
        #expect(settings.journalMode == "wal")
        // GRDB sets NORMAL while opening a pool; the journal must have put FULL back.
        #expect(settings.synchronous == 2)
        #expect(settings.foreignKeys)
        #expect(settings.busyTimeoutMilliseconds >= 1000)
    }

    @Test func walModeIsVisibleToASeparateRawConnection() async throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        _ = try journal.createJob(Fixture.newJob())
        // Bytes 18 and 19 of the database header are 2 for a WAL database.
        let header = try Data(contentsOf: URL(fileURLWithPath: directory.databasePath)).prefix(20)
        #expect(Array(header.suffix(2)) == [2, 2])
        let output = try await SQLiteShell.run(directory.databasePath, "PRAGMA journal_mode; PRAGMA synchronous;")
        #expect(output == ["wal", "2"])
    }

    @Test func checkpointTruncatesTheWAL() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        for seed in 1...50 { _ = try journal.createJob(Fixture.newJob(UInt64(seed))) }
        try journal.checkpoint()
        let walSize = try FileManager.default.attributesOfItem(atPath: directory.databasePath + "-wal")[.size] as? Int
        #expect(walSize == 0)
        #expect(try journal.allJobs().count == 50)
    }

    @Test func createsStateDirectoryAndLockFile() throws {
        let parent = try Scratch()
        let state = parent.url.appendingPathComponent("nested/state", isDirectory: true)
        let journal = try JobJournal.openForWriting(stateDirectory: state)
        #expect(FileManager.default.fileExists(atPath: journal.path))
        let pid = try String(contentsOfFile: state.appendingPathComponent(JobJournal.lockFileName).path, encoding: .utf8)
        #expect(pid == "\(getpid())\n")
    }

    @Test func readerNeedsAnExistingJournal() throws {
        let directory = try Scratch()
        #expect(throws: JournalError.notFound(path: directory.databasePath)) {
            try JobJournal.openForReading(stateDirectory: directory.url)
        }
    }

    @Test func readerCannotWrite() throws {
        let directory = try Scratch()
        try JobJournal.openForWriting(stateDirectory: directory.url).close()
        let reader = try JobJournal.openForReading(stateDirectory: directory.url)
        #expect(!reader.isWritable)
        #expect(throws: JournalError.readOnly(path: directory.databasePath)) {
            try reader.createJob(Fixture.newJob())
        }
    }

    @Test func readerWorksAfterTheWriterClosed() throws {
        let directory = try Scratch()
        let writer = try JobJournal.openForWriting(stateDirectory: directory.url)
        let job = try writer.createJob(Fixture.newJob())
        try writer.close()
        let reader = try JobJournal.openForReading(stateDirectory: directory.url)
        #expect(try reader.job(job.id)?.state == .discovered)
    }
}

@Suite("Damaged journal")
struct DamagedJournalTests {
    /// Builds a journal large enough to span many pages, closes it (checkpointing the
    /// WAL into the main file), then overwrites bytes in the middle of the file.
    private func damagedJournal() throws -> Scratch {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        for seed in 1...300 {
            var job = Fixture.newJob(UInt64(seed))
            job.vmName = String(repeating: "vm-name-padding-", count: 8)
            _ = try journal.createJob(job, detail: "seed \(seed)")
        }
        try journal.close()
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: directory.databasePath))
        let size = try handle.seekToEnd()
        try #require(size > 16 * 4096)
        try handle.seek(toOffset: size / 2 / 4096 * 4096)
        try handle.write(contentsOf: Data(repeating: 0xA5, count: 3 * 4096))
        try handle.close()
        return directory
    }

    @Test func writerRefusesDamagedDatabase() throws {
        let directory = try damagedJournal()
        do {
            _ = try JobJournal.openForWriting(stateDirectory: directory.url)
            Issue.record("a damaged journal was opened")
        } catch let error as JournalError {
            guard case let .damaged(path, message) = error else {
                Issue.record("expected .damaged, got \(error)")
                return
            }
            #expect(path == directory.databasePath)
            #expect(!message.isEmpty)
            #expect(error.description.contains("is damaged"))
            #expect(error.description.contains(directory.databasePath))
        }
        // The refused writer released its lock.
        #expect(try String(contentsOfFile: directory.lockPath, encoding: .utf8).isEmpty)
    }

    @Test func readerRefusesDamagedDatabase() throws {
        let directory = try damagedJournal()
        #expect {
            try JobJournal.openForReading(stateDirectory: directory.url)
        } throws: { error in
            guard case .damaged? = error as? JournalError else { return false }
            return true
        }
    }

    @Test func notADatabaseIsReportedAsDamaged() throws {
        let directory = try Scratch()
        try Data(repeating: 0x42, count: 8192).write(to: URL(fileURLWithPath: directory.databasePath))
        #expect {
            try JobJournal.openForWriting(stateDirectory: directory.url)
        } throws: { error in
            guard case .damaged? = error as? JournalError else { return false }
            return true
        }
    }
}

/// The sqlite3 command-line shell, as an independent connection to the journal file.
enum SQLiteShell {
    static func run(_ path: String, _ sql: String) async throws -> [String] {
        try await sh(["sqlite3", path, sql]).out.split(separator: "\n").map(String.init)
    }
}
