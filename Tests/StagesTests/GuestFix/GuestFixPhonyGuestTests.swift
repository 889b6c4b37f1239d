import TestSupport
import Foundation
import Testing
@testable import GuestFix
@testable import Stages

/// Runs the fixer on the phony Debian (guestfish-made, seconds to build). It has no libc,
/// so nothing that runs a guest binary (update-grub, update-initramfs) can be tested here;
/// those are covered by the real Debian guest.
@Suite("GuestFix on the phony guest", .serialized, .tags(.guest), .requiresLibguestfs)
struct GuestFixPhonyGuestTests {
    @Test("fstab, grub defaults and network pinning are fixed on an overlay; backups kept; source unchanged")
    func fixPhonyGuest() async throws {
        let source = try await GuestFixTestGuests.phony()
        let run = try await PhonyGuestFixRun.fix(source, identifier: "test-phony")
        defer { withExtendedLifetime(run) {} }  // the overlay lives in the run's scratch directory
        let (overlay, sourceDigest, report) = (run.overlay, run.sourceDigest, run.report)

        // Inspection
        #expect(report.inspection.type == "linux")
        #expect(report.inspection.distro == "debian")
        #expect(report.inspection.majorVersion == 12)
        #expect(report.inspection.rootDevice == "/dev/sda1")
        #expect(report.inspection.hostname == "phony-debian")
        #expect(report.inspection.installedKernels == ["6.1.0-18-amd64"])

        // Reported changes
        let files = Set(report.changes.map(\.file))
        #expect(files.isSuperset(of: ["/etc/fstab", "/etc/default/grub", "/boot/grub/grub.cfg", "/etc/network/interfaces",
                                      "/etc/netplan/50-cloud-init.yaml", "/etc/udev/rules.d/70-persistent-net.rules",
                                      NetworkPinningRemover.linkFilePath]))
        #expect(report.warnings.contains { $0.contains("/dev/sdc1") })
        // A filesystem that did not mount has its own warning, and is not trimmed on top.
        #expect(!report.warnings.contains { $0.hasPrefix("fstrim") }, "warnings: \(report.warnings)")
        #expect(report.skipped.contains { $0.area == "initramfs" })
        #expect(report.skipped.contains { $0.area == "bootloader" })

        // What is on the overlay, read through a separate read-only appliance.
        let backup = GuestFileEditor.backupDirectory
        let contents = try await GuestfishReader.read(overlay, format: "qcow2", files: [
            "/etc/fstab", "/etc/default/grub", "/boot/grub/grub.cfg", "/etc/network/interfaces", "/etc/netplan/50-cloud-init.yaml",
            NetworkPinningRemover.linkFilePath, "\(backup)/etc/fstab", "\(backup)/etc/network/interfaces",
            "\(backup)/etc/udev/rules.d/70-persistent-net.rules", "/etc/udev/rules.d/70-persistent-net.rules",
        ])
        let fstab = contents["/etc/fstab"] ?? ""
        let fstabLines = fstab.split(separator: "\n")
        #expect(fstabLines.contains { $0.hasPrefix("UUID=") && $0.contains("\t/\text4\terrors=remount-ro\t0\t1") })
        #expect(fstabLines.contains { $0.hasPrefix("UUID=") && $0.hasSuffix("  none   swap    sw   0   0") })
        #expect(fstabLines.contains { $0.hasPrefix("UUID=") && $0.contains("  /srv  ext4  defaults,nofail  0  2") })
        #expect(fstab.contains("/dev/sdc1\t/data"))
        #expect(fstab.contains("# swap was on /dev/sda2 during installation"))
        #expect(!fstabLines.contains { $0.hasPrefix("/dev/sda") || $0.hasPrefix("/dev/disk/by-path") })

        let grubDefaults = contents["/etc/default/grub"] ?? ""
        #expect(grubDefaults.contains("GRUB_CMDLINE_LINUX=\"root=UUID="))
        #expect(grubDefaults.contains("resume=UUID="))
        #expect(grubDefaults.contains("#GRUB_DISABLE_LINUX_UUID=true"))
        #expect((contents["/boot/grub/grub.cfg"] ?? "").contains("root=UUID="))

        #expect((contents["/etc/network/interfaces"] ?? "").contains("# hwaddress ether 00:50:56:8a:12:34"))
        #expect(!(contents["/etc/netplan/50-cloud-init.yaml"] ?? "").contains("macaddress"))
        #expect((contents[NetworkPinningRemover.linkFilePath] ?? "").contains("Name=ens192"))
        #expect((contents["/etc/udev/rules.d/70-persistent-net.rules"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)

        // Backups hold the originals.
        #expect((contents["\(backup)/etc/fstab"] ?? "").contains("/dev/sda1\t/\text4"))
        #expect((contents["\(backup)/etc/network/interfaces"] ?? "").contains("    hwaddress ether"))
        #expect((contents["\(backup)/etc/udev/rules.d/70-persistent-net.rules"] ?? "").contains("NAME=\"eth0\""))

        // The source was never written.
        #expect(try FileDigest.sha256(of: source) == sourceDigest)
    }

    @Test("a disk without an operating system is a clear unsupported-guest error")
    func noOperatingSystem() async throws {
        GuestFixTestGuests.configureLibguestfsForTests()
        let scratch = try Scratch()
        let blank = scratch.file("blank.qcow2")
        try await sh(["qemu-img", "create", "-q", "-f", "qcow2", blank.path, "64M"])
        let error = await #expect(throws: StageError.self) {
            _ = try await LinuxGuestFixer(applianceCPUs: 1).fix(disks: [(blank, "qcow2")], options: ConversionOptions(), identifier: "test-blank")
        }
        #expect(error?.code == .unsupportedGuest)
        #expect(error?.file == blank.path)
        #expect(error?.message.contains("no operating system found") == true)
    }
}
