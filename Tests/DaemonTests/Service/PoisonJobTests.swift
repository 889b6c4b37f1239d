import Foundation
import Testing
import TestSupport
import Journal
import Daemon

/// A file whose conversion crashes the daemon (a trap, not a kill) is not resumed forever:
/// the third start fails it as poison and keeps serving the queue. kill -9 never poisons.
extension DaemonServiceTests {
    func crashTwice(base: String, config: String, point: String) throws {
        for round in 1...2 {
            let crashing = try RunningDaemon(base: base, config: config, environment: ["HYPER2KVM_CRASH_POINT": point])
            crashing.process.waitUntilExit()
            #expect(crashing.process.terminationReason == .uncaughtSignal, "round \(round); log:\n\(crashing.output)")
            #expect(crashing.output.contains("crash point \(point)"), "round \(round) never reached \(point); log:\n\(crashing.output)")
        }
    }

    /// A daemon base directory whose queue holds one small VMDK, and the daemon's configuration
    /// (the scratch directory is returned to be kept alive for the test).
    func baseWithOneQueuedVMDK(_ label: String, named name: String) async throws -> (Scratch, String, String) {
        let scratch = try Scratch(label)
        let base = scratch.path("data")
        let config = try writeConfig(scratch)
        let raw = scratch.path("base.raw")
        try await TestDisks.makeRaw(at: raw)
        try FileManager.default.createDirectory(atPath: base + "/queue", withIntermediateDirectories: true)
        try await TestDisks.convert(raw: raw, to: base + "/queue/" + name, format: "vmdk", options: [])
        return (scratch, base, config)
    }

    @Test func aJobThatCrashesTheDaemonTwiceIsFailedAsPoisonAndTheDaemonStaysUp() async throws {
        let (scratch, base, config) = try await baseWithOneQueuedVMDK("daemon-poison", named: "bad.vmdk")
        defer { withExtendedLifetime(scratch) {} }
        let raw = scratch.path("base.raw")

        try crashTwice(base: base, config: config, point: "trap:convert.after-start")

        let daemon = try RunningDaemon(base: base, config: config)
        defer { _ = daemon.stop() }
        let queue = base + "/queue"
        #expect(await waitUntil(30) { exists(queue + "/.errors/bad.vmdk.error.json") }, "log:\n\(daemon.output)")
        #expect(exists(queue + "/.errors/bad.vmdk") && !exists(queue + "/bad.vmdk"))
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: queue + "/.errors/bad.vmdk.error.json"))) as? [String: Any]
        #expect(report?["error_code"] as? String == "poison", "\(String(describing: report))")
        let error = report?["error"] as? String ?? ""
        #expect(error.contains("SIGILL") && error.contains("convert") && error.contains("2 times"), "\(error)")
        #expect(!exists(base + "/output/bad"))

        // The daemon is still up and converts the next file.
        try await TestDisks.convert(raw: raw, to: scratch.path("good.vmdk"), format: "vmdk", options: [])
        try FileManager.default.moveItem(atPath: scratch.path("good.vmdk"), toPath: queue + "/good.vmdk")
        #expect(await waitUntil(90) { exists(base + "/output/good/good.qcow2") && !exists(queue + "/good.vmdk") }, "log:\n\(daemon.output)")
        #expect(daemon.process.isRunning)

        let journal = try JobJournal.openForReading(stateDirectory: URL(fileURLWithPath: base + "/state"))
        let history = try journal.history(job: 1)
        let crashes = history.filter { $0.to == .interrupted && ($0.detail ?? "").hasPrefix(CrashNote.prefix) }
        #expect(crashes.count == 2, "\(history.map { "\($0.to) \($0.detail ?? "")" })")
        #expect(try journal.job(1)?.state == .failed)
        // The record was consumed: nothing is blamed on the jobs of this (healthy) run.
        let record = try String(contentsOfFile: base + "/state/" + CrashRecordFile.fileName, encoding: .utf8)
        #expect(record.isEmpty)
    }

    @Test func twoKillsInARowOnlyCostTime() async throws {
        let (scratch, base, config) = try await baseWithOneQueuedVMDK("daemon-kill-twice", named: "vm.vmdk")
        defer { withExtendedLifetime(scratch) {} }
        let raw = scratch.path("base.raw")

        try crashTwice(base: base, config: config, point: "convert.after-start")

        let daemon = try RunningDaemon(base: base, config: config)
        defer { _ = daemon.stop() }
        #expect(await waitUntil(90) { exists(base + "/output/vm/vm.qcow2") && !exists(base + "/queue/vm.vmdk") }, "log:\n\(daemon.output)")
        #expect(!exists(base + "/queue/.errors/vm.vmdk.error.json"))
        let compare = try await sh(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, base + "/output/vm/vm.qcow2"], allowFailure: true)
        #expect(compare.status == 0)
        let journal = try JobJournal.openForReading(stateDirectory: URL(fileURLWithPath: base + "/state"))
        let history = try journal.history(job: 1)
        #expect(history.filter { $0.to == .interrupted }.count == 2)
        #expect(!history.contains { ($0.detail ?? "").hasPrefix(CrashNote.prefix) })
    }

    @Test(arguments: ["after-discovered", "after-stable"])
    func killedWhileClaimingTheRestartContinuesThatJob(point: String) async throws {
        let scratch = try Scratch("daemon-claim-kill")
        let base = scratch.path("data")
        let config = try writeConfig(scratch)
        let raw = scratch.path("base.raw")
        try await TestDisks.makeRaw(at: raw)
        try FileManager.default.createDirectory(atPath: base + "/queue", withIntermediateDirectories: true)
        try await TestDisks.convert(raw: raw, to: base + "/queue/vm.vmdk", format: "vmdk", options: [])
        let killed = try RunningDaemon(base: base, config: config, environment: ["HYPER2KVM_CRASH_POINT": point])
        killed.process.waitUntilExit()
        #expect(killed.output.contains("crash point \(point)"), "log:\n\(killed.output)")

        let daemon = try RunningDaemon(base: base, config: config)
        defer { _ = daemon.stop() }
        #expect(await waitUntil(90) { exists(base + "/output/vm/vm.qcow2") && !exists(base + "/queue/vm.vmdk") }, "log:\n\(daemon.output)")
        let journal = try JobJournal.openForReading(stateDirectory: URL(fileURLWithPath: base + "/state"))
        #expect(await waitUntil(30) { (try? journal.allJobs().map(\.state)) == [.archived] }, "\(String(describing: try? journal.allJobs().map(\.state)))")
    }
}
