import TestSupport
import Foundation
import Testing
@testable import GuestFix
@testable import Stages

/// The RHEL, SUSE and Ubuntu layouts we cannot boot here (`DistroPhonyGuests`), fixed on overlays
/// through the appliance exactly as in a real run, with a recording fake generator. Each test
/// asserts the exact edits, and `virt-diff` (a tool we did not write) confirms that nothing
/// else in the guest changed and that the source did not.
@Suite("Distribution layouts on phony guests", .serialized, .guestWorkSlot, .tags(.guest), .requiresLibguestfs)
struct DistroPhonyGuestTests {
    static func fix(_ name: String) async throws -> BootChainFixRun {
        try await BootChainFixRun.fix(source: try await DistroPhonyGuests.image(name), name: name)
    }

    static let rootSnapshot = "/.snapshots/1/snapshot"

    /// The regular files `virt-diff` sees added, removed or with changed content between the
    /// source and the overlay. A file listed both as `-` and `+` without `=` changed only in
    /// metadata (the device number of a remounted filesystem), which is not an edit.
    static func changedFiles(_ run: BootChainFixRun, source: URL) async throws -> Set<String> {
        let result = try await sh(["virt-diff", "--format=raw", "-a", source.path, "--format=qcow2", "-A", run.overlay.path],
                                  environment: RealGuestTesting.libguestfsEnvironment)
        var old = Set<String>(), new = Set<String>(), content = Set<String>()
        for line in result.out.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            // "+ - 0644 12 /etc/foo": marker, file type, mode, size, path; directories ("d") are left out.
            guard fields.count >= 5, fields[1] == "-", let field = fields.last, field.hasPrefix("/") else { continue }
            // virt-diff mounts snapper's /.snapshots too, where the root snapshot shows again.
            let path = field.hasPrefix(Self.rootSnapshot + "/") ? field.dropFirst(Self.rootSnapshot.count) : field
            switch fields[0] {
            case "-": old.insert(String(path))
            case "+": new.insert(String(path))
            case "=": content.insert(String(path))
            default: continue
            }
        }
        return content.union(old.symmetricDifference(new))
    }

    /// The report's files, and the backups of those that existed before, are exactly what changed.
    static func expectOnlyReportedFilesChanged(_ run: BootChainFixRun, source: URL) async throws {
        let changed = try await changedFiles(run, source: source)
        let backups = GuestFileEditor.backupDirectory
        let reported = Set(run.report.changes.map(\.file))
        #expect(changed.filter { !$0.hasPrefix(backups + "/") } == reported)
        // A rebuilt initramfs is regenerated, not edited: it has no backup. Config files do, in every area.
        let backedUp = Set(run.report.changes.filter { $0.before != "(absent)" && !$0.after.hasPrefix("rebuilt by ") }.map { backups + $0.file })
        #expect(changed.filter { $0.hasPrefix(backups + "/") } == backedUp)
    }

    @Test("RHEL 9: BLS and LVM names kept, dracut rebuilds initramfs-<v>.img, keyfile unbound from the MAC, system.devices removed, relabel at boot", .inDistroGuestRotation("rhel9"))
    func rhel9() async throws {
        let run = try await Self.fix("rhel9")
        let report = run.report
        let version = DistroPhonyGuests.rhel9Kernel
        #expect(report.inspection.distro == "rhel")
        #expect(run.generator.invocations == [["dracut", "-f", "/boot/initramfs-\(version).img", version]])
        let check = try #require(report.bootCheck)
        #expect(check.ensured, "\(check.problems)")
        #expect(check.entries.first?.initramfs == ["/boot/initramfs-\(version).img"])
        // The LVM and UUID names survive virtio: fstab, /etc/default/grub and the BLS entry stay.
        #expect(report.changes.map(\.file) == [
            "/etc/NetworkManager/system-connections/ens192.nmconnection", "/etc/systemd/network/10-hyper2kvm-virtio-net.link",
            "/etc/lvm/devices/system.devices", "/etc/dracut.conf.d/hyper2kvm-virtio.conf",
            "/boot/initramfs-\(version).img", "/.autorelabel",
        ])
        let keyfile = try #require(report.changes.first)
        #expect(keyfile.before == "mac-address=00:50:56:8A:12:34")
        #expect(keyfile.after == "# mac-address=00:50:56:8A:12:34  # removed by hyper2kvm (MAC of the old hypervisor)")
        let dracut = try #require(report.changes.first { $0.file == "/etc/dracut.conf.d/hyper2kvm-virtio.conf" })
        #expect(dracut.after.contains("add_drivers+=\" virtio_blk"))
        let relabel = try #require(report.changes.last)
        #expect(relabel.area == "selinux" && relabel.after.contains("/etc/selinux/targeted/contexts/files/file_contexts"))
        #expect(check.passed.contains("root= of the default entry: /dev/mapper/rhel-root is /dev/rhel/root"))
        #expect(report.firmware?.firmware == .bios)
        try await Self.expectOnlyReportedFilesChanged(run, source: try await DistroPhonyGuests.image("rhel9"))
    }

    @Test("RHEL 8: \\$kernelopts in grubenv gets a stable root, the block stays 1024 bytes; ifcfg HWADDR unbound", .inDistroGuestRotation("rhel8"))
    func rhel8() async throws {
        let run = try await Self.fix("rhel8")
        let report = run.report
        let version = DistroPhonyGuests.rhel8Kernel
        let swap = "resume=UUID=\(DistroPhonyGuests.rhel8SwapUUID)"
        #expect(run.generator.invocations == [["dracut", "-f", "/boot/initramfs-\(version).img", version]])
        #expect(report.changes.map(\.file) == [
            "/etc/sysconfig/network-scripts/ifcfg-ens192", "/etc/systemd/network/10-hyper2kvm-virtio-net.link",
            "/boot/grub2/grubenv", "/etc/dracut.conf.d/hyper2kvm-virtio.conf", "/boot/initramfs-\(version).img", "/.autorelabel",
        ])
        let ifcfg = try #require(report.changes.first)
        #expect(ifcfg.before == "HWADDR=00:50:56:8A:12:34")
        #expect(ifcfg.after == "# HWADDR=00:50:56:8A:12:34  # removed by hyper2kvm (MAC of the old hypervisor)")
        let grubenv = try #require(report.changes.first { $0.file == "/boot/grub2/grubenv" })
        #expect(grubenv.before == "kernelopts=root=/dev/sda2 ro crashkernel=auto \(swap) rhgb quiet ")
        #expect(grubenv.after == "kernelopts=root=UUID=\(DistroPhonyGuests.rhel8RootUUID) ro crashkernel=auto \(swap) rhgb quiet ")
        // The BLS entry's `options $kernelopts` is read through the block.
        let check = try #require(report.bootCheck)
        #expect(check.ensured, "\(check.problems)")
        #expect(check.passed.contains("root= of the default entry: UUID=\(DistroPhonyGuests.rhel8RootUUID) is /dev/sda2"))
        #expect(check.entries.first?.initramfs == ["/boot/initramfs-\(version).img"])
        try await Self.expectOnlyReportedFilesChanged(run, source: try await DistroPhonyGuests.image("rhel8"))
        // grub refuses a block of another size: read the written one back from the overlay.
        let block = try await sh(["guestfish", "--ro", "--format=qcow2", "-a", run.overlay.path, "-i", "filesize", "/boot/grub2/grubenv"],
                                 environment: RealGuestTesting.libguestfsEnvironment)
        #expect(block.out.trimmingCharacters(in: .whitespacesAndNewlines) == "1024")
    }

    @Test("SLES 15: SCSI by-id names become UUID= in fstab and resume=, dracut rebuilds initrd-<v>, the vmxnet3 rule no longer pins eth0", .inDistroGuestRotation("sles15"))
    func sles15() async throws {
        let run = try await Self.fix("sles15")
        let report = run.report
        let version = DistroPhonyGuests.slesKernel
        let disk = DistroPhonyGuests.slesDiskByID
        let root = "UUID=\(DistroPhonyGuests.slesRootUUID)", swap = "UUID=\(DistroPhonyGuests.slesSwapUUID)"
        // grub reads /boot from the default subvolume (the root snapshot), never from /var.
        #expect(run.generator.invocations == [["dracut", "-f", "/boot/initrd-\(version)", version]])
        #expect(report.changes.map(\.file) == [
            "/etc/fstab", "/etc/udev/rules.d/70-persistent-net.rules", "/etc/systemd/network/10-hyper2kvm-virtio-net.link",
            "/etc/default/grub", "/boot/grub2/grub.cfg", "/etc/dracut.conf.d/hyper2kvm-virtio.conf", "/boot/initrd-\(version)",
        ])
        let fstab = try #require(report.changes.first)
        #expect(fstab.after.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).prefix(4).joined(separator: " ") } == [
            "\(root) / btrfs defaults", "\(root) /var btrfs subvol=/@/var", "\(root) /home btrfs subvol=/@/home",
            "\(root) /.snapshots btrfs subvol=/@/.snapshots", "\(swap) swap swap defaults",
        ])
        let defaults = try #require(report.changes.first { $0.file == "/etc/default/grub" })
        #expect(defaults.before.contains("resume=\(disk)-part3") && defaults.after.contains("resume=\(swap) preempt=full"))
        let grub = try #require(report.changes.first { $0.file == "/boot/grub2/grub.cfg" })
        #expect(grub.after.contains("root=\(root) ${extra_cmdline} splash=silent resume=\(swap) preempt=full"))
        // Without the vmxnet3 rule the virtio NIC is named by the .link file after wicked's ifcfg-eth0.
        let link = try #require(report.changes.first { $0.file.hasSuffix(".link") })
        #expect(link.after.contains("Name=eth0"))
        let check = try #require(report.bootCheck)
        #expect(check.ensured, "\(check.problems)")
        #expect(check.passed.contains("/boot/initrd-\(version) holds virtio_blk virtio_pci (and virtio_scsi)"))
        #expect(check.passed.contains("fstab /var: \(root) is /dev/sda2"))
        #expect(report.firmware?.firmware == .bios && report.firmware?.reasons.contains("BIOS boot partition /dev/sda1") == true)
        // The backups under /var/lib land in the @/var subvolume, not in the root snapshot.
        try await Self.expectOnlyReportedFilesChanged(run, source: try await DistroPhonyGuests.image("sles15"))
    }

    @Test("Ubuntu 22.04: curtin's dm-uuid and by-uuid names kept, cloud-init's netplan unbound from the MAC and guarded, initramfs-tools rebuilds initrd.img-<v>", .inDistroGuestRotation("ubuntu2204"))
    func ubuntu2204() async throws {
        let run = try await Self.fix("ubuntu2204")
        let report = run.report
        let version = DistroPhonyGuests.ubuntuKernel
        #expect(report.inspection.distro == "ubuntu")
        #expect(run.generator.invocations == [["update-initramfs", "-u", "-k", version]])
        // fstab, grub.cfg and the grub.d drop-in name nothing the virtio disk would lose: untouched.
        #expect(report.changes.map(\.file) == [
            "/etc/netplan/50-cloud-init.yaml", "/etc/systemd/network/10-hyper2kvm-virtio-net.link",
            CloudInitNetworkGuard.guardFile, "/etc/initramfs-tools/modules", "/boot/initrd.img-\(version)",
        ])
        let netplan = try #require(report.changes.first)
        #expect(netplan.before.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            == ["match:", "macaddress: 00:50:56:8a:12:34", "set-name: ens192"])
        let link = try #require(report.changes.first { $0.file.hasSuffix(".link") })
        #expect(link.after.contains("Name=ens192"))
        let cloudGuard = try #require(report.changes.first { $0.file == CloudInitNetworkGuard.guardFile })
        #expect(cloudGuard.after.contains("network: {config: disabled}"))
        let check = try #require(report.bootCheck)
        #expect(check.ensured, "\(check.problems)")
        // Before dm-uuid links were resolved, this root made every Ubuntu LVM guest "boot not ensured".
        #expect(check.passed.contains { $0.hasPrefix("fstab /: /dev/disk/by-id/dm-uuid-LVM-") && $0.hasSuffix(" is /dev/ubuntu-vg/ubuntu-lv") },
                "\(check.passed)")
        #expect(check.passed.contains("root= of the default entry: /dev/mapper/ubuntu--vg-ubuntu--lv is /dev/ubuntu-vg/ubuntu-lv"))
        #expect(check.entries.first?.initramfs == ["/boot/initrd.img-\(version)"])
        #expect(report.firmware?.firmware == .bios)
        try await Self.expectOnlyReportedFilesChanged(run, source: try await DistroPhonyGuests.image("ubuntu2204"))
    }
}
