import Foundation
import Testing
import TestSupport
import Daemon

/// Names are chosen by whoever drops a file: one with a newline cannot add a line to the
/// log, and one of 255 bytes still gets its `.error.json`.
extension DaemonServiceTests {
    @Test func aFileNameCannotInjectLogLinesAndALongNameStillGetsItsReport() async throws {
        let scratch = try Scratch("daemon-names")
        let base = scratch.path("data")
        let daemon = try RunningDaemon(base: base, config: try writeConfig(scratch))
        defer { _ = daemon.stop() }
        let queue = base + "/queue"
        #expect(await waitUntil(30) { exists(queue) })

        let fake = "2026-01-01T00:00:00+0000 info hyper2kvm : ✅ Completed: FAKE.vmdk"
        let evil = "evil\n" + fake
        let long = String(repeating: "L", count: 250) + ".vmdk"
        #expect(long.utf8.count == 255)
        for name in [evil, long] {
            let staging = scratch.path("staging.bin")
            try await sh(["dd", "if=/dev/urandom", "of=\(staging)", "bs=64k", "count=2", "status=none"])
            try FileManager.default.moveItem(atPath: staging, toPath: queue + "/" + name)
        }
        let longReport = queue + "/.errors/" + ErrorReportWriter.reportName(for: long)
        #expect(await waitUntil(60) { exists(queue + "/.errors/\(evil).error.json") && exists(longReport) }, "log:\n\(daemon.output)")
        #expect(exists(queue + "/.errors/" + long) && !exists(queue + "/" + long))

        let lines = daemon.output.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(!lines.contains { $0.hasPrefix(fake) }, "a forged line reached the log:\n\(daemon.output)")
        let mentioning = lines.filter { $0.contains("FAKE.vmdk") }
        #expect(!mentioning.isEmpty && mentioning.allSatisfy { $0.contains(#"evil\n2026-01-01"#) }, "\(mentioning)")

        // `status` prints source paths and errors: escaped there too.
        let status = try await sh([ProductBinary.path, "status", "--state-dir", base + "/state"]).out
        #expect(!status.split(separator: "\n").contains { $0.hasPrefix(fake) }, "\(status)")
        #expect(status.contains(#"evil\n2026-01-01"#), "\(status)")

        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: longReport))) as? [String: Any]
        #expect(json?["filename"] as? String == long)
    }
}
