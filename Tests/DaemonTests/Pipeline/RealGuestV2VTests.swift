import Foundation
import Journal
import Testing
import TestSupport

/// `use_v2v: true` through the daemon, on the real Debian 12 guest of RealGuestConversionTests
/// with its boot device named as the Debian installer names it (`root=UUID=…` and UUIDs in
/// fstab). The VMware-style guest itself names `/dev/sda1`, which virt-v2v does not rewrite
/// on Debian (its output drops to the initramfs shell; BENCHMARKS.md, end-to-end), so that
/// one shows what our own fixer adds, and this one what virt-v2v supports.
///
/// The daemon is killed (SIGKILL) while virt-v2v-in-place runs; after a restart the job
/// finishes once: `v2v` ran twice and completed once, `fix` was skipped with its reason,
/// metadata.json names virt-v2v and its version, and the output boots on virtio.
@Suite(.serialized, .guestWorkSlot, .inGuestRotation("v2v"), .tags(.guest, .boot), .requiresLibguestfs, .requiresBootTools) struct RealGuestV2VTests {
    static var cachedGuest: String {
        (ProcessInfo.processInfo.environment["HYPER2KVM_TEST_CACHE"] ?? "/var/cache/hyper2kvm-test") + "/debian12-vmware.vmdk"
    }

    /// A qcow2 copy of the test guest whose boot names its root by UUID: two appliance
    /// launches (read the UUID, then rewrite grub.cfg and fstab with the guest's own sed).
    func uuidNamedGuest(at path: String) async throws {
        if !FileManager.default.fileExists(atPath: Self.cachedGuest) {
            try await sh([Repository.script("build-test-guest"), "debian12"])
        }
        try await sh(["qemu-img", "convert", "-f", "vmdk", "-O", "qcow2", Self.cachedGuest, path])
        let env = RealGuestTesting.libguestfsEnvironment
        let uuid = try await sh(["guestfish", "--ro", "-a", path, "run", ":", "vfs-uuid", "/dev/sda1"], environment: env)
            .out.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(uuid.count == 36, "no UUID for /dev/sda1: \(uuid)")
        // grub.cfg as it boots now, /etc/default/grub for virt-v2v's own update-grub (the
        // VMware-style guest disables UUIDs there and names root= and resume= by device),
        // and fstab; the swap partition is dropped rather than renamed.
        let script = "sed -i -e 's#root=/dev/sda1#root=UUID=\(uuid)#g' -e 's# resume=/dev/sda2##g' /boot/grub/grub.cfg"
            + " && sed -i -e 's#root=/dev/sda1 ##' -e '/GRUB_DISABLE_LINUX_UUID/d' -e 's# resume=/dev/sda2##' /etc/default/grub"
            + " && sed -i -e 's#^/dev/sda1#UUID=\(uuid)#' -e '/^\\/dev\\/sda2/d' /etc/fstab"
        try await sh(["guestfish", "--rw", "-a", path, "-m", "/dev/sda1", "sh", script], environment: env)
        let grub = try await sh(["guestfish", "--ro", "-a", path, "-m", "/dev/sda1", "cat", "/boot/grub/grub.cfg"], environment: env).out
        #expect(grub.contains("root=UUID=\(uuid)") && !grub.contains("/dev/sda"), "grub.cfg was not rewritten")
        let defaults = try await sh(["guestfish", "--ro", "-a", path, "-m", "/dev/sda1", "cat", "/etc/default/grub", ":",
                                     "cat", "/etc/fstab"], environment: env).out
        let settings = defaults.split(separator: "\n").filter { !$0.hasPrefix("#") }
        #expect(!settings.contains { $0.contains("/dev/sda") || $0.contains("GRUB_DISABLE_LINUX_UUID") }, "\(defaults)")
    }

    @Test(.timeLimit(.minutes(60)))
    func useV2VConvertsThroughTheJournalSurvivesAKillAndBoots() async throws {
        let scratch = try Scratch("real-guest-v2v")
        let base = scratch.path("data")
        try FileManager.default.createDirectory(atPath: base + "/queue", withIntermediateDirectories: true)
        try await uuidNamedGuest(at: scratch.path("v2vguest.qcow2"))
        let config = scratch.path("daemon.yaml")
        try """
            command: daemon
            file_stable_seconds: 1
            use_v2v: true
            verbose: 2
            retry_policy: {enabled: false}
            """.write(toFile: config, atomically: true, encoding: .utf8)

        // First run: killed while virt-v2v-in-place converts.
        let first = try DaemonServiceTests.RunningDaemon(base: base, config: config, environment: RealGuestTesting.libguestfsEnvironment)
        try FileManager.default.moveItem(atPath: scratch.path("v2vguest.qcow2"), toPath: base + "/queue/v2vguest.qcow2")
        var converting: [Int32] = []
        for _ in 0..<600 where converting.isEmpty {
            try await Task.sleep(for: .seconds(1))
            converting = processes(mentioning: "v2v-input.xml")
        }
        #expect(!converting.isEmpty, "virt-v2v-in-place never started: \(first.output)")
        try await Task.sleep(for: .seconds(20))  // into the conversion, past the appliance launch
        kill(first.process.processIdentifier, SIGKILL)
        _ = first.stop()
        // The converter's process group dies with the daemon: nothing writes the old overlay.
        var leftovers = processes(mentioning: "v2v-input.xml")
        for _ in 0..<60 where !leftovers.isEmpty {
            try await Task.sleep(for: .seconds(1))
            leftovers = processes(mentioning: "v2v-input.xml")
        }
        #expect(leftovers.isEmpty, "virt-v2v outlived the killed daemon: \(leftovers)")

        let second = try DaemonServiceTests.RunningDaemon(base: base, config: config, environment: RealGuestTesting.libguestfsEnvironment)
        defer { _ = second.stop() }
        let published = try await RealGuestTesting.awaitPublication(base: base, vm: "v2vguest", queued: "v2vguest.qcow2", seconds: 2400)
        let qcow2 = published + "/v2vguest.qcow2"
        #expect(FileManager.default.fileExists(atPath: qcow2), "not published; log:\n\(second.output)")
        guard FileManager.default.fileExists(atPath: qcow2) else { return }

        let journal = try JobJournal.openForReading(stateDirectory: URL(fileURLWithPath: base + "/state"))
        let history = try journal.history(job: 1)
        #expect(history.filter { $0.to == .stageStarted && $0.stage == "v2v" }.count == 2, "\(history)")
        #expect(history.filter { $0.to == .stageCompleted && $0.stage == "v2v" }.count == 1)
        #expect(history.contains { $0.to == .stageSkipped && $0.stage == "fix" && ($0.detail ?? "").contains("use_v2v: true") })
        #expect(history.contains { $0.to == .stageCompleted && $0.stage == "v2v" && ($0.detail ?? "").contains("virt-v2v-in-place 2.") })
        let text = try await sh([ProductBinary.path, "history", "1", "--state-dir", base + "/state"]).out
        #expect(text.contains("v2v"), "\(text)")

        let metadata = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: published + "/metadata.json"))) as? [String: Any]
        let converter = (metadata?["tool"] as? [String: Any])?["guest_converter"] as? [String: Any]
        #expect(converter?["name"] as? String == "virt-v2v-in-place", "\(String(describing: metadata?["tool"]))")
        #expect((converter?["version"] as? String)?.hasPrefix("2.") == true)

        let boot = try await sh([Repository.script("boot-test"), qcow2], environment: ["BOOT_TEST_TIMEOUT": "600"], allowFailure: true)
        #expect(boot.status == 0, "virt-v2v's conversion did not boot on virtio: \(boot.out) \(boot.err)")
    }
}
