import Foundation
import Testing
import TestSupport

/// A parser trap costs one job, never the daemon: the probe runs in a child process.
/// The reader's test trap (armed for one file name through the environment, which only
/// the child reader looks at) stands for a parser bug that a hostile file would hit.
@Suite(.serialized, .tags(.slow), .notInQuickRun) struct ReaderCrashDaemonTests {
    @Test func aReaderThatTrapsFailsItsJobAndTheDaemonConvertsTheNextFile() async throws {
        let service = DaemonServiceTests()
        let scratch = try Scratch("daemon-reader-trap")
        let base = scratch.path("data")
        let daemon = try DaemonServiceTests.RunningDaemon(base: base, config: try service.writeConfig(scratch),
                                                          environment: ["HYPER2KVM_READER_TRAP_FOR_TESTS": "boom.vmdk"])
        defer { _ = daemon.stop() }
        let queue = base + "/queue"
        #expect(await waitUntil(30) { service.exists(queue) })

        let raw = scratch.path("base.raw")
        try await TestDisks.makeRaw(at: raw)
        try await TestDisks.convert(raw: raw, to: scratch.path("boom.vmdk"), format: "vmdk", options: [])
        try FileManager.default.moveItem(atPath: scratch.path("boom.vmdk"), toPath: queue + "/boom.vmdk")
        let report = queue + "/.errors/boom.vmdk.error.json"
        #expect(await waitUntil(60) { service.exists(report) }, "log:\n\(daemon.output)")
        let error = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as? [String: Any]
        let message = error?["error"] as? String ?? ""
        #expect(message.contains("reading the source crashed the reader (signal "), "\(message)")
        #expect(message.contains("Fatal error"), "\(message)")
        #expect(message.contains("the daemon is unaffected"), "\(message)")
        #expect(daemon.process.isRunning, "log:\n\(daemon.output)")

        try await TestDisks.convert(raw: raw, to: scratch.path("next.vmdk"), format: "vmdk", options: [])
        try FileManager.default.moveItem(atPath: scratch.path("next.vmdk"), toPath: queue + "/next.vmdk")
        #expect(await waitUntil(90) { service.exists(base + "/output/next/next.qcow2") && !service.exists(queue + "/next.vmdk") },
                "log:\n\(daemon.output)")
        #expect(daemon.stop() == 0, "log:\n\(daemon.output)")
    }
}
