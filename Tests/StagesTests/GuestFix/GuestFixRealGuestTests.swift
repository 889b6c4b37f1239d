import Foundation
import Testing
@testable import Stages

/// The end-to-end proof on a real Debian 12 made like a VMware export (root /dev/sda1 in
/// fstab and on the grub command line, initramfs without virtio, ens192 with its MAC):
/// unfixed it does not boot on virtio-blk; fixed through an overlay and converted to
/// qcow2 it boots to multi-user under QEMU TCG with virtio disk and NIC.
@Suite("GuestFix on a real Debian 12 guest", .serialized)
struct GuestFixRealGuestTests {
    static var bootTest: String { GuestFixTestGuests.repositoryRoot.appendingPathComponent("scripts/boot-test").path }

    @Test("fixed guest boots on virtio with its network up; source unchanged")
    func fixedGuestBoots() async throws {
        GuestFixTestGuests.configureLibguestfsForTests()
        let source = try await GuestFixTestGuests.debian12()
        let scratch = try GuestFixScratchDirectory()
        let sourceDigest = try FileDigest.sha256(of: source)
        let overlay = scratch.file("overlay.qcow2")
        try await GuestFixOverlay.create(over: source, sourceFormat: "vmdk", at: overlay)

        let fixStart = ContinuousClock.now
        let report = try await LinuxGuestFixer().fix(disks: [(overlay, "qcow2")], options: ConversionOptions(), identifier: "test-debian12")
        let fixTime = ContinuousClock.now - fixStart
        print("debian12 fix stage: \(fixTime); steps: \(report.durations.map { "\($0.step)=\(String(format: "%.1f", $0.seconds))s" })")
        for change in report.changes { print("  change [\(change.area)] \(change.file): \(change.before.prefix(120)) -> \(change.after.prefix(120))") }
        for warning in report.warnings { print("  warning: \(warning)") }
        for skip in report.skipped { print("  skipped [\(skip.area)]: \(skip.reason)") }

        #expect(report.inspection.distro == "debian")
        #expect(report.inspection.majorVersion == 12)
        #expect(report.inspection.installedKernels.count == 1)
        #expect(report.changes.contains { $0.area == "fstab" && $0.after.hasPrefix("UUID=") })
        #expect(report.changes.contains { $0.area == "initramfs" && $0.file.hasPrefix("/boot/initrd.img-") })
        #expect(report.changes.contains { $0.area == "bootloader" && $0.after.contains("update-grub") })
        #expect(report.changes.contains { $0.file == NetworkPinningRemover.linkFilePath })

        // The regenerated grub.cfg is re-checked by the fixer; a bus name left in it is a warning.
        #expect(!report.warnings.contains { $0.contains("still wrote") })
        #expect(report.warnings.isEmpty)

        let convertStart = ContinuousClock.now
        let output = scratch.file("debian12-fixed.qcow2")
        _ = try await GuestFixTestGuests.run("qemu-img", ["convert", "-f", "qcow2", "-O", "qcow2", overlay.path, output.path])
        print("qemu-img convert overlay -> qcow2: \(ContinuousClock.now - convertStart)")

        let bootStart = ContinuousClock.now
        let boot = try await ExternalCommand(Self.bootTest, [output.path, "qcow2"], environment: ["BOOT_TEST_TIMEOUT": "300"]).run()
        print("boot test (fixed): status \(boot.status) in \(ContinuousClock.now - bootStart)\n\(boot.stdoutText)\(boot.stderrText)")
        #expect(boot.status == 0)
        // The virtio NIC came up under the old name with DHCP (ifupdown config unchanged but for the MAC).
        #expect(boot.stdoutText.contains("HYPER2KVM-NET ens192="))

        #expect(try FileDigest.sha256(of: source) == sourceDigest)
    }

    @Test("the unfixed guest does not boot on virtio-blk")
    func unfixedGuestDoesNotBoot() async throws {
        let source = try await GuestFixTestGuests.debian12()
        let sourceDigest = try FileDigest.sha256(of: source)
        let bootStart = ContinuousClock.now
        // Debian's initramfs waits 180 s for a missing root device before giving up.
        let boot = try await ExternalCommand(Self.bootTest, [source.path, "vmdk"], environment: ["BOOT_TEST_TIMEOUT": "320"]).run()
        print("boot test (unfixed): status \(boot.status) in \(ContinuousClock.now - bootStart)\n\(boot.stderrText)")
        #expect(boot.status == 1)
        #expect(boot.stderrText.contains("/dev/sda1"))
        #expect(try FileDigest.sha256(of: source) == sourceDigest)
    }
}
