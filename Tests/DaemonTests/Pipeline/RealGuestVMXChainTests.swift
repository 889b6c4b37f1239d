import Foundation
import Testing
import TestSupport

/// The real Debian 12 of RealGuestConversionTests, as a VMware datastore folder: a `.vmx` (BIOS,
/// a generated VMware MAC) whose disk is a two-level snapshot chain (a monolithicFlat base
/// descriptor + `-flat.vmdk`, two sparse deltas made with `qemu-img create -b`), with a marker
/// file written into the newest delta through guestfish. Dropped into the daemon (guest fixes
/// on), it converts as one job, keeps the newest state (the marker), the MAC and BIOS, and boots
/// on virtio disk and NIC. One boot: the whole suite pays about three minutes for it.
@Suite(.serialized, .guestWorkSlot, .inGuestRotation("vmx-chain"), .tags(.guest, .boot), .requiresLibguestfs, .requiresBootTools) struct RealGuestVMXChainTests {
    static let repositoryRoot = RealGuestTesting.repositoryRoot
    static var cachedGuest: String {
        (ProcessInfo.processInfo.environment["HYPER2KVM_TEST_CACHE"] ?? "/var/cache/hyper2kvm-test") + "/debian12-vmware.vmdk"
    }
    static let mac = "00:50:56:aa:bb:cc"
    static let marker = "hyper2kvm-newest-delta-\(UUID().uuidString.prefix(8))"

    static let vmx = """
        .encoding = "UTF-8"
        config.version = "8"
        virtualHW.version = "14"
        displayName = "deb-vmx"
        memSize = "1024"
        numvcpus = "1"
        firmware = "bios"
        scsi0.present = "TRUE"
        scsi0.virtualDev = "lsilogic"
        scsi0:0.present = "TRUE"
        scsi0:0.deviceType = "scsi-hardDisk"
        scsi0:0.fileName = "deb-000002.vmdk"
        ethernet0.present = "TRUE"
        ethernet0.virtualDev = "vmxnet3"
        ethernet0.networkName = "VM Network"
        ethernet0.addressType = "generated"
        ethernet0.generatedAddress = "\(mac)"
        guestOS = "debian12-64"

        """

    @Test func aVMXFolderWhoseDiskIsATwoLevelSnapshotChainConvertsToTheNewestStateAndBoots() async throws {
        if !FileManager.default.fileExists(atPath: Self.cachedGuest) {
            try await sh([Self.repositoryRoot.appendingPathComponent("scripts/build-test-guest").path, "debian12"])
        }
        let scratch = try Scratch("real-guest-vmx-chain")
        let stage = try scratch.subdirectory("stage")
        try await sh(["qemu-img", "convert", "-f", "vmdk", "-O", "vmdk", "-o", "subformat=monolithicFlat", Self.cachedGuest, "deb.vmdk"], in: stage)
        try await sh(["qemu-img", "create", "-q", "-f", "vmdk", "-b", "deb.vmdk", "-F", "vmdk", "deb-000001.vmdk"], in: stage)
        try await sh(["qemu-img", "create", "-q", "-f", "vmdk", "-b", "deb-000001.vmdk", "-F", "vmdk", "deb-000002.vmdk"], in: stage)
        try await sh(["guestfish", "--rw", "--format=vmdk", "-a", "deb-000002.vmdk", "-i", "write", "/etc/hyper2kvm-chain-marker", Self.marker],
                     environment: RealGuestTesting.libguestfsEnvironment, in: stage)
        try Self.vmx.write(to: stage.appendingPathComponent("deb-vmx.vmx"), atomically: true, encoding: .utf8)

        let base = scratch.path("data")
        try FileManager.default.createDirectory(atPath: base + "/queue", withIntermediateDirectories: true)
        let config = scratch.path("daemon.yaml")
        try "command: daemon\nfile_stable_seconds: 1\nretry_policy: {enabled: false}\n".write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try DaemonServiceTests.RunningDaemon(base: base, config: config, environment: RealGuestTesting.libguestfsEnvironment)
        defer { _ = daemon.stop() }
        for name in ["deb-vmx.vmx", "deb-000002.vmdk", "deb-000001.vmdk", "deb-flat.vmdk", "deb.vmdk"] {
            try FileManager.default.moveItem(atPath: stage.appendingPathComponent(name).path, toPath: base + "/queue/" + name)
        }

        let published = try await RealGuestTesting.awaitPublication(base: base, vm: "deb-vmx", queued: "deb-vmx.vmx", seconds: 1500)
        let qcow2 = published + "/deb-vmx.qcow2"
        #expect(FileManager.default.fileExists(atPath: qcow2), "log:\n\(daemon.output)")
        guard FileManager.default.fileExists(atPath: qcow2) else { return }
        let xml = try String(contentsOfFile: published + "/domain.xml", encoding: .utf8)
        #expect(xml.contains(Self.mac), "the .vmx MAC must reach domain.xml: \(xml)")
        #expect(!xml.contains("OVMF"), "the .vmx says BIOS: no UEFI loader")
        #expect(xml.contains("<memory unit='MiB'>1024</memory>"), "\(xml)")
        let processed = try FileManager.default.subpathsOfDirectory(atPath: base + "/queue/.processed")
        for name in ["deb-vmx.vmx", "deb-000002.vmdk", "deb-000001.vmdk", "deb-flat.vmdk", "deb.vmdk"] {
            #expect(processed.contains { $0.hasSuffix("/" + name) }, "\(name) not archived with the job: \(processed)")
        }

        let cat = try await sh(["virt-cat", "--format=qcow2", "-a", qcow2, "/etc/hyper2kvm-chain-marker"],
                               environment: RealGuestTesting.libguestfsEnvironment, allowFailure: true)
        #expect(cat.out.contains(Self.marker), "the newest delta's marker is not in the output: \(cat.out) \(cat.err)")

        let boot = try await sh([Self.repositoryRoot.appendingPathComponent("scripts/boot-test").path, qcow2],
                                environment: ["BOOT_TEST_TIMEOUT": "600"], allowFailure: true)
        #expect(boot.status == 0, "the converted guest did not boot on virtio: \(boot.out) \(boot.err)")
        #expect(boot.out.contains("HYPER2KVM-NET ens192="), "the NIC did not come up under its old name: \(boot.out)")
    }
}
