import Foundation
import Testing
import TestSupport
import Journal

/// The guest fix runs in a child process (`hyper2kvm-fix-guest`), so libguestfs
/// crashing costs one attempt of one job, and a shutdown does not wait for a running fix.
/// The child's test hook (`HYPER2KVM_GUESTFIX_HOOK_FOR_TESTS`, read by the child alone)
/// crashes or stalls it once its appliance is up; `HYPER2KVM_GUESTFIX_HOOK_ONCE` names a
/// file the firing child creates, so only one attempt is hit and the next runs normally.
/// The guest is the phony Debian (scripts/build-test-guest phony): a fix of it takes
/// about a minute under TCG.
@Suite(.serialized, .guestWorkSlot, .tags(.guest), .requiresLibguestfs) struct GuestFixChildDaemonTests {
    static var phonyGuest: String {
        (ProcessInfo.processInfo.environment["HYPER2KVM_TEST_CACHE"] ?? "/var/cache/hyper2kvm-test") + "/phony-debian.img"
    }

    /// A qcow2 copy of the phony guest at `path` (small: the raw image is mostly holes).
    private func phonyCopy(at path: String) async throws {
        if !FileManager.default.fileExists(atPath: Self.phonyGuest) {
            try await sh([RealGuestTesting.repositoryRoot.appendingPathComponent("scripts/build-test-guest").path, "phony"])
        }
        try await sh(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", Self.phonyGuest, path])
    }

    /// A phony guest has no libc: its guest tools cannot run, as in the Stages phony tests.
    private func writeConfig(_ scratch: Scratch, extra: String) throws -> String {
        let path = scratch.path("daemon.yaml")
        try """
            command: daemon
            file_stable_seconds: 0.5
            fix_guest: true
            regen_initramfs: false
            update_grub: false
            verbose: 2
            \(extra)
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    private func hookEnvironment(_ hook: String, once: String) -> [String: String] {
        RealGuestTesting.libguestfsEnvironment.merging(
            ["HYPER2KVM_GUESTFIX_HOOK_FOR_TESTS": hook, "HYPER2KVM_GUESTFIX_HOOK_ONCE": once]) { _, new in new }
    }

    /// SIGKILL hits the child before its appliance starts, abort once it is up (the case where
    /// a qemu could be left behind): each appliance launch costs minutes under TCG on a loaded host.
    @Test(arguments: [("kill", "started", "signal 9: Killed"), ("abort", "launched", "signal 6: Aborted")])
    func aGuestFixChildThatCrashesFailsOneAttemptAndTheDaemonServesOn(action: String, point: String, expected: String) async throws {
        let scratch = try Scratch("fix-child-\(action)")
        let base = scratch.path("data")
        try FileManager.default.createDirectory(atPath: base + "/queue", withIntermediateDirectories: true)
        let config = try writeConfig(scratch, extra: "retry_policy: {enabled: true, max_retries: 2, retry_delay: 1, backoff_multiplier: 1}")
        let fired = scratch.path("hook-fired")
        let daemon = try DaemonServiceTests.RunningDaemon(base: base, config: config,
                                                          environment: hookEnvironment("\(action)@\(point)", once: fired))
        defer { _ = daemon.stop() }
        try await phonyCopy(at: scratch.path("first.qcow2"))
        try await phonyCopy(at: scratch.path("second.qcow2"))
        try FileManager.default.moveItem(atPath: scratch.path("first.qcow2"), toPath: base + "/queue/first.qcow2")
        try FileManager.default.moveItem(atPath: scratch.path("second.qcow2"), toPath: base + "/queue/second.qcow2")

        // Both jobs are published: the one whose fixer crashed by its retry, the other as usual.
        // The retry runs after the other job's fix (one job at a time): two fixes and a crash,
        // which took 14 minutes at a load average of 30 (a fix alone takes about one here).
        for vm in ["second", "first"] {
            let published = try await RealGuestTesting.awaitPublication(base: base, vm: vm, queued: "\(vm).qcow2", seconds: 2400)
            #expect(FileManager.default.fileExists(atPath: published + "/\(vm).qcow2"), "\(vm) not published; log:\n\(daemon.output)")
        }
        #expect(FileManager.default.fileExists(atPath: fired), "the hook never fired")
        #expect(daemon.process.isRunning, "the daemon died; log:\n\(daemon.output)")

        let journal = try JobJournal.openForReading(stateDirectory: URL(fileURLWithPath: base + "/state"))
        let histories = try journal.allJobs().map { try journal.history(job: $0.id) }
        let failures = histories.flatMap { $0.filter { $0.to == .stageFailed } }
        #expect(failures.count == 1, "exactly one attempt crashed: \(failures.map(\.detail))")
        let failure = failures.first
        #expect(failure?.stage == "fix")
        #expect(failure?.detail?.contains("the guest fixer crashed (\(expected))") == true, "\(String(describing: failure?.detail))")
        #expect(histories.flatMap { $0.filter { $0.to == .retrying } }.count == 1)
        #expect(try journal.allJobs().allSatisfy { $0.state == .archived || $0.state == .published }, "log:\n\(daemon.output)")
        // The crashed child's appliance died with its process group.
        #expect(processes(mentioning: base + "/work/").isEmpty, "a fixer or its qemu outlived the crash")
        #expect(daemon.stop() == 0, "log:\n\(daemon.output)")
    }

    @Test func sigtermDuringAGuestFixStopsTheDaemonWithinTheGraceAndTheJobResumes() async throws {
        let scratch = try Scratch("fix-child-term")
        let base = scratch.path("data")
        try FileManager.default.createDirectory(atPath: base + "/queue", withIntermediateDirectories: true)
        let grace = 1.0
        let config = try writeConfig(scratch, extra: "retry_policy: {enabled: false}\nshutdown_grace_seconds: \(grace)")
        let fired = scratch.path("hook-fired")
        // Stalled after launch: a guest tool that would run for minutes.
        let first = try DaemonServiceTests.RunningDaemon(base: base, config: config,
                                                         environment: hookEnvironment("stall@launched", once: fired))
        try await phonyCopy(at: scratch.path("vm.qcow2"))
        try FileManager.default.moveItem(atPath: scratch.path("vm.qcow2"), toPath: base + "/queue/vm.qcow2")
        var waited = 0.0
        while !FileManager.default.fileExists(atPath: fired), waited < 600, first.process.isRunning {
            try await Task.sleep(for: .milliseconds(200))
            waited += 0.2
        }
        #expect(FileManager.default.fileExists(atPath: fired), "the fix never reached its stall; log:\n\(first.output)")
        #expect(!processes(mentioning: base + "/work/").isEmpty, "no fixer runs")

        let stopAsked = ContinuousClock.now
        first.process.terminate()
        while first.process.isRunning, ContinuousClock.now - stopAsked < .seconds(60) {
            try await Task.sleep(for: .milliseconds(50))
        }
        let stopSeconds = (ContinuousClock.now - stopAsked) / .seconds(1)
        let status = first.stop()
        #expect(stopSeconds < grace + 5, "took \(stopSeconds) s to stop; log:\n\(first.output)")
        #expect(status == 0, "log:\n\(first.output)")
        // The group got SIGTERM (then SIGKILL) before the daemon exited; dying takes qemu a moment.
        let left = processes(mentioning: base + "/work/")
        var lingered = 0
        while !processes(mentioning: base + "/work/").isEmpty, lingered < 30 {
            try await Task.sleep(for: .milliseconds(100))
            lingered += 1
        }
        print("fixer processes at the daemon's exit: \(left); gone after \(Double(lingered) / 10) s")
        #expect(processes(mentioning: base + "/work/").isEmpty, "a fixer or its qemu outlived the daemon by 3 s")
        let journal = try JobJournal.openForReading(stateDirectory: URL(fileURLWithPath: base + "/state"))
        #expect(try journal.job(1)?.state == .interrupted, "log:\n\(first.output)")

        let second = try DaemonServiceTests.RunningDaemon(base: base, config: config, environment: RealGuestTesting.libguestfsEnvironment)
        defer { _ = second.stop() }
        let published = try await RealGuestTesting.awaitPublication(base: base, vm: "vm", queued: "vm.qcow2", seconds: 1800)
        #expect(FileManager.default.fileExists(atPath: published + "/vm.qcow2"), "log:\n\(second.output)")
        let history = try journal.history(job: 1)
        #expect(history.filter { $0.to == .stageStarted && $0.stage == "fix" }.count == 2, "the fix did not start over")
        #expect(history.filter { $0.to == .stageCompleted && $0.stage == "fix" }.count == 1)
        let metadata = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: published + "/metadata.json"))) as? [String: Any]
        #expect((metadata?["inspection"] as? [String: Any])?["hostname"] as? String == "phony-debian")
    }
}
