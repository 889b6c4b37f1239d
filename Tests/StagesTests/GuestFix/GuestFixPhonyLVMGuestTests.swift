import TestSupport
import Foundation
import Testing
@testable import GuestFix
@testable import Stages

/// Runs the fixer on the phony Debian whose root is on LVM (guestfish-made, no libc, so no
/// guest tool runs). On such a guest only the /boot partition is named by a bus-dependent
/// kernel name; root and swap are named by LVM (stable on any hypervisor) and must stay as
/// the installer wrote them, while the LVM devices file, which names the old disk, goes.
@Suite("GuestFix on the phony LVM guest", .serialized, .tags(.guest), .requiresLibguestfs)
struct GuestFixPhonyLVMGuestTests {
    @Test("LVM root found; /dev/sda1 becomes UUID=, LVM names stay; system.devices removed; source unchanged")
    func fixPhonyLVMGuest() async throws {
        let source = try await GuestFixTestGuests.phonyLVM()
        let run = try await PhonyGuestFixRun.fix(source, identifier: "test-phony-lvm")
        defer { withExtendedLifetime(run) {} }  // the overlay lives in the run's scratch directory
        let (overlay, sourceDigest, report) = (run.overlay, run.sourceDigest, run.report)

        // Inspection follows fstab's /dev/mapper name to the logical volume.
        #expect(report.inspection.distro == "debian")
        #expect(report.inspection.rootDevice == "/dev/vg0/root")
        #expect(report.inspection.mountpoints["/"] == "/dev/vg0/root")
        #expect(report.inspection.mountpoints["/boot"] == "/dev/sda1")
        #expect(report.inspection.hostname == "phony-debian-lvm")
        #expect(report.inspection.installedKernels == ["6.1.0-18-amd64"])

        // Only fstab's /boot line and the devices file change; the boot loader config names
        // the root by LVM and is left as it was, with nothing reported unresolved.
        let fstabChanges = report.changes.filter { $0.file == "/etc/fstab" }
        #expect(fstabChanges.count == 1)
        #expect(fstabChanges.first?.before == "/dev/sda1\t/boot\text2\tdefaults\t0\t2")
        #expect(fstabChanges.first?.after.hasPrefix("UUID=") == true)
        #expect(report.changes.contains { $0.area == "caches" && $0.file == "/etc/lvm/devices/system.devices" })
        #expect(!report.changes.contains { $0.file == "/etc/default/grub" || $0.file == "/boot/grub/grub.cfg" })
        #expect(!report.warnings.contains { $0.contains("names no disk") || $0.contains("identity lookup failed") },
                "warnings: \(report.warnings)")

        let backup = GuestFileEditor.backupDirectory
        let contents = try await GuestfishReader.read(overlay, format: "qcow2", mounts: ["/dev/vg0/root", "/dev/sda1:/boot"], files: [
            "/etc/fstab", "/etc/default/grub", "/boot/grub/grub.cfg", "/etc/lvm/devices/system.devices",
            "\(backup)/etc/lvm/devices/system.devices", "\(backup)/etc/fstab",
        ])
        let fstab = contents["/etc/fstab"] ?? ""
        let fstabLines = fstab.split(separator: "\n", omittingEmptySubsequences: false)
        let bootUUID = try #require(fstabLines.first { $0.hasSuffix("\t/boot\text2\tdefaults\t0\t2") }?.split(separator: "\t").first)
        #expect(bootUUID.hasPrefix("UUID="))
        // The rest of the file is the original byte for byte: comments, spacing, options,
        // and the LVM names of root, swap and the data volume (a by-id dm-name link).
        let original = try #require(contents["\(backup)/etc/fstab"])
        #expect(original.contains("/dev/sda1\t/boot\text2"))
        // (GuestfishReader ends the last file it reads with one newline more, hence the trimming.)
        #expect(fstab.trimmingCharacters(in: .newlines)
            == original.replacingOccurrences(of: "/dev/sda1\t/boot", with: "\(bootUUID)\t/boot").trimmingCharacters(in: .newlines))
        #expect(fstab.contains("/dev/mapper/vg0-root /               ext4    errors=remount-ro 0       1\n"))
        #expect(fstab.contains("/dev/vg0/swap   none            swap    sw              0       0\n"))
        #expect(fstab.contains("/dev/disk/by-id/dm-name-vg0-data  /data  ext4  defaults,nofail  0  2\n"))
        #expect(fstab.contains("# /boot was on /dev/sda1 during installation\n"))

        let bootUUIDValue = String(bootUUID.dropFirst("UUID=".count))
        // /boot (sda1) starts at sector 2048 of the raw source; blkid reads it there without an appliance.
        let identity = try await sh(["blkid", "-p", "-o", "value", "-s", "UUID", "-O", "1048576", source.path])
        #expect(identity.out.trimmingCharacters(in: .whitespacesAndNewlines) == bootUUIDValue, "UUID= must be /boot's own")

        let grubDefaults = contents["/etc/default/grub"] ?? ""
        #expect(grubDefaults.contains("GRUB_CMDLINE_LINUX=\"root=/dev/mapper/vg0-root rd.lvm.lv=vg0/root console=ttyS0\""))
        #expect(grubDefaults.contains("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet resume=/dev/vg0/swap\""))
        #expect((contents["/boot/grub/grub.cfg"] ?? "").contains("root=/dev/mapper/vg0-root ro rd.lvm.lv=vg0/root quiet resume=/dev/vg0/swap"))

        // system.devices names the old disk's WWID: gone, with the original kept.
        #expect(contents["/etc/lvm/devices/system.devices"] == "")
        #expect((contents["\(backup)/etc/lvm/devices/system.devices"] ?? "").contains("IDTYPE=sys_wwid"))

        #expect(try FileDigest.sha256(of: source) == sourceDigest)
    }
}
