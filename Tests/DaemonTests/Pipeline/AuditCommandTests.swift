import Foundation
import Testing
import TestSupport

/// `verify`, `journal replay` and `journal export` on a real conversion.
@Suite(.serialized) struct AuditCommandTests {
    @Test func verifyCatchesAFlippedByteAndExportListsEverything() async throws {
        let scratch = try Scratch("audit")
        let (_, source) = try await TestDisks.makeSource(in: scratch)
        let out = scratch.path("out")
        try await sh([ProductBinary.path, "convert", source, "--output-dir", out, "--no-fix"])
        let state = ["--state-dir", out + "/.hyper2kvm/state"]

        let clean = try await sh([ProductBinary.path, "verify"] + state, allowFailure: true)
        #expect(clean.status == 0, "\(clean.out) \(clean.err)")
        #expect(clean.out.contains("0 mismatch(es)"))

        let disk = out + "/vm/vm.qcow2"
        let handle = try #require(FileHandle(forUpdatingAtPath: disk))
        handle.seek(toFileOffset: 200_000)
        let byte = handle.readData(ofLength: 1).first ?? 0
        handle.seek(toFileOffset: 200_000)
        handle.write(Data([byte ^ 0x01]))
        try handle.close()

        let damaged = try await sh([ProductBinary.path, "verify", "--job", "1"] + state, allowFailure: true)
        #expect(damaged.status != 0)
        #expect(damaged.out.contains("MISMATCH job 1 publish/") && damaged.out.contains(disk))

        let export = try await sh([ProductBinary.path, "journal", "export"] + state).out.split(separator: "\n")
        #expect(export.contains { $0.contains("\"type\":\"job\"") })
        #expect(export.filter { $0.contains("\"type\":\"transition\"") }.count >= 10)
        #expect(export.contains { $0.contains("\"type\":\"artifact\"") })
        let replay = try await sh([ProductBinary.path, "journal", "replay"] + state).out
        #expect(replay.contains("stage-completed [convert #1]"))
    }

    @Test func aDamagedJournalIsRefusedWithARecoveryHint() async throws {
        let scratch = try Scratch("audit-damaged")
        let (_, source) = try await TestDisks.makeSource(in: scratch)
        let out = scratch.path("out")
        try await sh([ProductBinary.path, "convert", source, "--output-dir", out, "--no-fix"])
        let database = out + "/.hyper2kvm/state/journal.sqlite"
        try await sh(["sqlite3", database, "PRAGMA wal_checkpoint(TRUNCATE);"])
        try await sh(["dd", "if=/dev/urandom", "of=\(database)", "bs=4096", "seek=1", "count=2", "conv=notrunc", "status=none"])
        let status = try await sh([ProductBinary.path, "status", "--state-dir", out + "/.hyper2kvm/state"], allowFailure: true)
        #expect(status.status != 0)
        #expect(status.err.contains("damaged") && status.err.contains("journal.sqlite"), "\(status.err)")
        let again = try await sh([ProductBinary.path, "convert", source, "--output-dir", out, "--no-fix"], allowFailure: true)
        #expect(again.status != 0, "a damaged journal must never be silently replaced")
    }

    /// A first start killed after it took the journal lock but before it created the
    /// journal leaves only the lock file; that must not pass for a lost journal.
    @Test func aFirstStartKilledBeforeTheJournalExistedDoesNotBlockTheNext() async throws {
        let scratch = try Scratch("audit-first-start")
        let (_, source) = try await TestDisks.makeSource(in: scratch)
        let out = scratch.path("out")
        let state = out + "/.hyper2kvm/state"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: state + "/journal.lock", contents: nil))

        let run = try await sh([ProductBinary.path, "convert", source, "--output-dir", out, "--no-fix"], allowFailure: true)
        #expect(run.status == 0, "\(run.err)")
        #expect(FileManager.default.fileExists(atPath: state + "/journal.sqlite"))
    }

    @Test func aDeletedJournalIsRefusedUntilJournalInitSaysToStartOver() async throws {
        let scratch = try Scratch("audit-deleted")
        let (_, source) = try await TestDisks.makeSource(in: scratch)
        let out = scratch.path("out")
        try await sh([ProductBinary.path, "convert", source, "--output-dir", out, "--no-fix"])
        let state = out + "/.hyper2kvm/state"
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: state + "/journal.sqlite" + suffix) }

        let refused = try await sh([ProductBinary.path, "convert", source, "--output-dir", out, "--no-fix"], allowFailure: true)
        #expect(refused.status != 0, "a lost journal must not silently reconvert")
        #expect(refused.err.contains("the journal is missing") && refused.err.contains("journal init"), "\(refused.err)")
        #expect(refused.err.contains("published VM directory"), "\(refused.err)")
        #expect(!FileManager.default.fileExists(atPath: state + "/journal.sqlite"))

        let initialised = try await sh([ProductBinary.path, "journal", "init", "--state-dir", state])
        #expect(initialised.out.contains("created an empty journal"))
        let twice = try await sh([ProductBinary.path, "journal", "init", "--state-dir", state], allowFailure: true)
        #expect(twice.status != 0 && twice.err.contains("never replaced"), "\(twice.err)")
        let status = try await sh([ProductBinary.path, "status", "--state-dir", state, "--json"])
        let document = try JSONSerialization.jsonObject(with: Data(status.out.utf8)) as? [String: Any]
        #expect((document?["jobs"] as? [Any])?.isEmpty == true, "\(status.out)")
    }
}
