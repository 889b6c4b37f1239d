import TestSupport
import Foundation
import Testing
@testable import GuestFix
@testable import Stages

/// The boot layouts users hit that no test had (see `BootChainTestGuests`), fixed on
/// overlays through one appliance each, with a recording fake generator: /boot found from a
/// by-path link, UEFI decided from the disk, the initramfs rebuilt under the name the boot
/// loader loads, and the boot chain read back; and the layouts the fix does not handle,
/// which must end "converted, boot not ensured" with the reason named.
@Suite("Boot chain on phony guests", .serialized, .guestWorkSlot, .tags(.guest), .requiresLibguestfs)
struct BootChainPhonyGuestTests {
    let version = BootChainTestGuests.version

    @Test("LVM root with /boot named by a VMware by-path link: /boot mounted, the initramfs rebuilt on it, the chain checked", .inPhonyGuestRotation("phony-lvm-bypath"))
    func lvmByPathBoot() async throws {
        let run = try await BootChainFixRun.fix("lvm-bypath")
        let report = run.report
        // Inspection alone cannot place a by-path /boot; the device map can.
        #expect(report.inspection.mountpoints["/boot"] == "/dev/sda1")
        #expect(!report.warnings.contains { $0.contains("not mounted") }, "\(report.warnings)")
        #expect(run.generator.invocations == [["update-initramfs", "-u", "-k", version]])
        #expect(report.changes.contains { $0.area == "initramfs" && $0.file == "/boot/initrd.img-\(version)" })
        let fstab = try #require(report.changes.first { $0.file == "/etc/fstab" })
        #expect(fstab.before.hasPrefix("/dev/disk/by-path/pci-0000:00:10.0-scsi-0:0:0:0-part1\t/boot"))
        #expect(fstab.after.hasPrefix("UUID=\(BootChainTestGuests.bootUUID)\t/boot"))
        // grub on /boot loads /vmlinuz-<v> relative to /boot: read back from the written disk.
        let check = try #require(report.bootCheck)
        #expect(check.ensured, "\(check.problems)")
        #expect(check.entries.first?.kernel == "/boot/vmlinuz-\(version)")
        #expect(check.entries.first?.initramfs == ["/boot/initrd.img-\(version)"])
        #expect(check.passed.contains("/boot/initrd.img-\(version) holds virtio_blk virtio_pci (and virtio_scsi)"))
        #expect(check.passed.contains("root= of the default entry: /dev/mapper/vg0-root is /dev/vg0/root"))
        #expect(report.bootResult == nil)
        #expect(PreflightVerdict.judge(report: report, failure: nil).outcome != .willNotBoot)
        let firmware = try #require(report.firmware)
        #expect(firmware.firmware == .bios && firmware.reasons.contains("boot code in the MBR") && firmware.reasons.contains("grub-pc is installed"))
    }

    @Test("UEFI guest dropped as a bare disk: UEFI decided from the ESP and its EFI binary, with the reasons; the firmware emit chooses", .inPhonyGuestRotation("phony-uefi"))
    func uefiFromDisk() async throws {
        let run = try await BootChainFixRun.fix("uefi-sdx")
        let report = run.report
        let firmware = try #require(report.firmware)
        #expect(firmware.firmware == .uefi && firmware.decidedBy == "disk")
        #expect(firmware.reasons.contains("EFI System Partition /dev/sda1"))
        #expect(firmware.reasons.contains { $0.contains("/dev/sda1:/EFI/debian/grubx64.efi") })
        #expect(firmware.reasons.contains("fstab mounts the ESP at /boot/efi") && firmware.reasons.contains("grub-efi is installed"))
        // Nothing in a bare VMDK states the firmware: the disk's decision reaches domain.xml.
        let choice = FirmwareChoice.choose(vmUEFI: nil, source: .unknown, disk: report.firmware)
        #expect(choice.decision.firmware == .uefi && choice.warning == nil)
        #expect(PreflightVerdict.judge(report: report, failure: nil, firmwareWarning: choice.warning).outcome != .willNotBoot)

        #expect(report.inspection.mountpoints["/boot/efi"] == "/dev/sda1")
        #expect(run.generator.invocations == [["update-initramfs", "-u", "-k", version]])
        let check = try #require(report.bootCheck)
        #expect(check.ensured, "\(check.problems)")
        #expect(check.passed.contains { $0.hasPrefix("root= of the default entry: UUID=") })
        #expect(check.passed.contains { $0.hasPrefix("fstab /boot/efi: UUID=") })
    }

    @Test("dracut guest with XFS root and a separate /boot: dracut writes the initrd.img-<v> grub loads, not initramfs-<v>.img", .inPhonyGuestRotation("phony-dracut-xfs"))
    func dracutLoadsDebianName() async throws {
        let run = try await BootChainFixRun.fix("dracut-xfs")
        let report = run.report
        #expect(run.generator.invocations == [["dracut", "-f", "/boot/initrd.img-\(version)", version]])
        #expect(report.changes.contains { $0.file == InitramfsRegenerator.dracutConfigPath })
        #expect(!report.changes.contains { $0.file.contains("initramfs-\(version).img") })
        let check = try #require(report.bootCheck)
        #expect(check.ensured, "\(check.problems)")
        #expect(check.entries.first?.initramfs == ["/boot/initrd.img-\(version)"])
        #expect(report.inspection.mountpoints["/boot"] == "/dev/sda1")
        #expect(PreflightVerdict.judge(report: report, failure: nil).outcome != .willNotBoot)
    }

    @Test("grub.cfg loading an initramfs that is not there: converted, boot not ensured, naming the file", .inPhonyGuestRotation("phony-missing-initramfs"))
    func missingInitramfs() async throws {
        let run = try await BootChainFixRun.fix("missing-initrd")
        let report = run.report
        #expect(run.generator.invocations.isEmpty, "no entry loads an installed kernel's initramfs")
        let check = try #require(report.bootCheck)
        #expect(!check.ensured)
        #expect(check.problems.contains("the default entry's initramfs /boot/initrd.img-6.1.0-17-amd64 does not exist"))
        #expect(report.bootResult?.hasPrefix("converted, boot not ensured: boot check: the default entry's initramfs") == true)
        #expect(report.warnings.contains { $0.contains("initrd.img-6.1.0-17-amd64 does not exist") })
        #expect(PreflightVerdict.judge(report: report, failure: nil).outcome == .willNotBoot)
    }

    @Test("LUKS root: nothing can be opened; converted, boot not ensured, saying a key is needed", .inPhonyGuestRotation("phony-luks"))
    func luksRoot() async throws {
        let run = try await BootChainFixRun.fix("luks-root")
        let reasons = run.report.bootNotEnsuredReasons
        #expect(reasons.count == 1)
        #expect(reasons.first?.contains("encrypted (LUKS on /dev/sda2)") == true)
        #expect(reasons.first?.contains("a key is needed") == true)
        #expect(run.report.changes.isEmpty)
        #expect(run.report.warnings.contains { $0.contains("a key is needed") })
        #expect(PreflightVerdict.judge(report: run.report, failure: nil).outcome == .willNotBoot)
    }

    @Test("root on md RAID: fixed as far as we can, but converted, boot not ensured, naming md RAID", .inPhonyGuestRotation("phony-md"))
    func mdRoot() async throws {
        let run = try await BootChainFixRun.fix("md-root")
        let report = run.report
        #expect(report.inspection.rootDevice.hasPrefix("/dev/md"))
        #expect(report.bootNotEnsuredReasons.contains { $0.contains("on md RAID") })
        #expect(report.warnings.contains { $0.contains("on md RAID") })
        #expect(report.bootResult?.hasPrefix("converted, boot not ensured: the root filesystem is on md RAID") == true)
        // fstab's /dev/md/md0 is the array the appliance calls /dev/md127 (its md name).
        #expect(!report.bootNotEnsuredReasons.contains { $0.contains("/dev/md/md0") }, "\(report.bootNotEnsuredReasons)")
        #expect(report.inspection.mountpoints["/"] == report.inspection.rootDevice)
        #expect(PreflightVerdict.judge(report: report, failure: nil).outcome == .willNotBoot)
    }
}
