import Foundation
import Testing
import TestSupport

/// The product's promise, end to end: a real Debian 12 made like a VMware export (root on
/// /dev/sda1, NIC ens192 pinned to a VMware MAC, no virtio in its initramfs), packed as an
/// OVA and dropped into the daemon, comes out as a qcow2 that boots under QEMU with virtio
/// disk and NIC. (The bare-VMDK path is booted by StagesTests' GuestFixRealGuestTests.)
@Suite(.serialized, .guestWorkSlot, .tags(.guest, .boot), .requiresLibguestfs, .requiresBootTools) struct RealGuestConversionTests {
    static let repositoryRoot = RealGuestTesting.repositoryRoot

    static var cachedGuest: String {
        (ProcessInfo.processInfo.environment["HYPER2KVM_TEST_CACHE"] ?? "/var/cache/hyper2kvm-test") + "/debian12-vmware.vmdk"
    }

    @Test func aVMwareDebianOVADroppedIntoTheDaemonBootsOnVirtio() async throws {
        if !FileManager.default.fileExists(atPath: Self.cachedGuest) {
            try await sh([Self.repositoryRoot.appendingPathComponent("scripts/build-test-guest").path, "debian12"])
        }
        let scratch = try Scratch("real-guest")
        let base = scratch.path("data")
        try FileManager.default.createDirectory(atPath: base + "/queue", withIntermediateDirectories: true)
        try await sh(["qemu-img", "convert", "-f", "vmdk", "-O", "raw", Self.cachedGuest, scratch.path("guest.raw")])
        let ova = try await OVABuilder.make(name: "web01", raw: scratch.path("guest.raw"), in: scratch.url.path)
        try FileManager.default.removeItem(atPath: scratch.path("guest.raw"))
        let sourceSHA = try await TestDisks.sha256(ova)
        let config = scratch.path("daemon.yaml")
        try "command: daemon\nfile_stable_seconds: 1\nretry_policy: {enabled: false}\n".write(toFile: config, atomically: true, encoding: .utf8)
        let environment = RealGuestTesting.libguestfsEnvironment
        let daemon = try DaemonServiceTests.RunningDaemon(base: base, config: config, environment: environment)
        defer { _ = daemon.stop() }
        try FileManager.default.moveItem(atPath: ova, toPath: base + "/queue/web01.ova")

        // 40 minutes: under a full run the libguestfs appliance alone took 140-170 s to start and
        // inspection 190-290 s (25 minutes were not enough once, with every guest test running).
        let published = try await RealGuestTesting.awaitPublication(base: base, vm: "web01", queued: "web01.ova", seconds: 2400)
        #expect(FileManager.default.fileExists(atPath: published + "/web01.qcow2"), "log:\n\(daemon.output)")
        guard FileManager.default.fileExists(atPath: published + "/web01.qcow2") else { return }

        let metadata = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: published + "/metadata.json"))) as? [String: Any]
        let fixes = (metadata?["fixes"] as? [[String: Any]]) ?? []
        let areas = Set(fixes.compactMap { $0["area"] as? String })
        #expect(areas.isSuperset(of: ["fstab", "bootloader", "initramfs", "network"]), "fixes: \(areas)")
        #expect((metadata?["inspection"] as? [String: Any])?["distro"] as? String == "debian")
        let processed = try FileManager.default.subpathsOfDirectory(atPath: base + "/queue/.processed")
        let archived = try #require(processed.first { $0.hasSuffix("web01.ova") })
        #expect(try await TestDisks.sha256(base + "/queue/.processed/" + archived) == sourceSHA, "the source was modified")

        let boot = try await sh([Self.repositoryRoot.appendingPathComponent("scripts/boot-test").path, published + "/web01.qcow2"],
                          environment: ["BOOT_TEST_TIMEOUT": "600"], allowFailure: true)
        #expect(boot.status == 0, "the converted guest did not boot on virtio: \(boot.out) \(boot.err)")
        #expect(boot.out.contains("HYPER2KVM-NET ens192="), "the NIC did not come up under its old name: \(boot.out)")
        let xml = try String(contentsOfFile: published + "/domain.xml", encoding: .utf8)
        #expect(xml.contains("00:50:56:aa:bb:cc"), "the OVF's MAC must reach domain.xml")
    }
}
