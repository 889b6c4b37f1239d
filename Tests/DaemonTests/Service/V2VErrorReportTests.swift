import Foundation
import Journal
import Testing
import TestSupport

/// With `use_v2v: true`, what virt-v2v says when it fails reaches the operator word for word:
/// in the journal's stage failure and in `.error.json`. A stand-in `virt-v2v-in-place` (first
/// on PATH) fails as the real one does on a disk it cannot convert, so no appliance runs; the
/// real tool's runs are in RealGuestV2VTests.
@Suite(.serialized, .tags(.slow)) struct V2VErrorReportTests {
    static let errorLine = "virt-v2v-in-place: error: inspection could not detect the source guest (or physical machine)."

    @Test func virtV2VsErrorIsQuotedVerbatimInTheJournalAndTheErrorReport() async throws {
        let scratch = try Scratch("v2v-error")
        let bin = try scratch.subdirectory("bin")
        let fake = bin.path + "/virt-v2v-in-place"
        try """
            #!/bin/sh
            if [ "$1" = --version ]; then echo "virt-v2v-in-place 2.2.0"; exit 0; fi
            echo "[   0.0] Setting up the source: -i libvirtxml $3"
            echo "[   1.0] Opening the source"
            echo "\(Self.errorLine)" >&2
            printf '\\nIf reporting bugs, run virt-v2v-in-place with debugging enabled and include the complete output:\\n\\n  virt-v2v-in-place -v -x [...]\\n' >&2
            exit 1
            """.write(toFile: fake, atomically: true, encoding: .utf8)
        for tool in ["nbdkit", "qemu-nbd"] { try "#!/bin/sh\nexit 0\n".write(toFile: bin.path + "/" + tool, atomically: true, encoding: .utf8) }
        for tool in ["virt-v2v-in-place", "nbdkit", "qemu-nbd"] { chmod(bin.path + "/" + tool, 0o755) }

        let base = scratch.path("data")
        let queue = base + "/queue"
        try FileManager.default.createDirectory(atPath: queue, withIntermediateDirectories: true)
        let config = scratch.path("daemon.yaml")
        try "command: daemon\nfile_stable_seconds: 0.5\nuse_v2v: true\nretry_policy: {enabled: false}\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        let path = bin.path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        let daemon = try DaemonServiceTests.RunningDaemon(base: base, config: config, environment: ["PATH": path])
        defer { _ = daemon.stop() }
        let raw = scratch.path("base.raw")
        try await TestDisks.makeRaw(at: raw)
        try await TestDisks.convert(raw: raw, to: scratch.path("guest.vmdk"), format: "vmdk", options: [])
        try FileManager.default.moveItem(atPath: scratch.path("guest.vmdk"), toPath: queue + "/guest.vmdk")

        let reportPath = queue + "/.errors/guest.vmdk.error.json"
        for _ in 0..<120 where !FileManager.default.fileExists(atPath: reportPath) { try await Task.sleep(for: .seconds(0.5)) }
        let report = try String(contentsOfFile: reportPath, encoding: .utf8)
        let decoded = try JSONSerialization.jsonObject(with: Data(report.utf8)) as? [String: Any]
        #expect((decoded?["error"] as? String)?.contains(Self.errorLine) == true, "\(report)")
        #expect(!report.contains("If reporting bugs"), "only virt-v2v's error lines, not its advice")

        let journal = try JobJournal.openForReading(stateDirectory: URL(fileURLWithPath: base + "/state"))
        let history = try journal.history(job: 1)
        let failure = history.first { $0.to == .stageFailed && $0.stage == "v2v" }
        #expect(failure?.detail?.contains(Self.errorLine) == true, "\(history)")
        #expect(history.contains { $0.to == .stageSkipped && $0.stage == "fix" })
        // Nothing of the failed attempt is left running or half-written.
        #expect(processes(mentioning: scratch.path("data")).filter { $0 != daemon.process.processIdentifier }.isEmpty)
    }
}
