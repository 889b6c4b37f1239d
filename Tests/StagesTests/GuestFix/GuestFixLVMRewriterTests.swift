import Foundation
import Testing
@testable import GuestFix
@testable import Stages

/// A resolver that answers for every device it is asked about, as the appliance would for
/// a guest whose only disk is an LVM physical volume: the whole disk has a UUID (the PV's).
/// Any LVM name that reaches it comes back rewritten, so the tests see every lookup.
private func answerEverything(_ reference: DeviceReference) -> String? {
    switch reference.kind {
    case .kernelName: reference.kind.applianceDevice.map { "UUID=uuid-of-\($0.dropFirst(5))" }
    case .byPath, .byID: "UUID=uuid-of-sda-the-pv"
    case .stable, .other: "UUID=must-not-be-asked"
    }
}

/// LVM guests: /dev/mapper/…, /dev/<vg>/<lv> and the by-id links udev makes from LVM/MD
/// metadata name volumes, not buses, so they stay; only kernel names of partitions change.
@Suite("GuestFix rewriters on LVM guests")
struct GuestFixLVMRewriterTests {
    @Test("LVM and MD names are stable or untouched, never disk references", arguments: [
        ("/dev/mapper/vg0-root", BlockDeviceSpec.stable),
        ("/dev/mapper/rhel-swap", .stable),
        ("/dev/disk/by-id/dm-name-vg0-data", .stable),
        ("/dev/disk/by-id/dm-uuid-LVM-Xq3kVd7mN2pR8sT1uW4yZ6bC9eF0gH5jAbCdEfGhIjKlMnOpQrStUvWxYz012345", .stable),
        ("/dev/disk/by-id/lvm-pv-uuid-Xq3kVd-7mN2-pR8s-T1uW-4yZ6-bC9e-F0gH5j", .stable),
        ("/dev/disk/by-id/md-uuid-1a2b3c4d:5e6f7a8b:9c0d1e2f:3a4b5c6d", .stable),
        ("/dev/disk/by-id/md-name-host:root", .stable),
        ("/dev/vg0/swap", .other), ("/dev/vg0/root", .other),
        // Volume groups whose names start like a kernel disk name are still not disks.
        ("/dev/sdata/root", .other), ("/dev/vdisks/lv0", .other), ("/dev/hd/home", .other), ("/dev/sda/root", .other),
        // A disk's own by-id links still name the old hypervisor's disk.
        ("/dev/disk/by-id/scsi-36000c29d1e2f3a4b5c6d7e8f90a1b2c3-part1", .byID(partition: 1)),
        ("/dev/disk/by-id/dm-name", .byID(partition: nil)),
    ])
    func classify(spec: String, expected: BlockDeviceSpec) {
        #expect(BlockDeviceSpec(spec) == expected)
    }

    static let fstab = """
        # /etc/fstab: static file system information.
        #
        # <file system> <mount point>   <type>  <options>       <dump>  <pass>
        /dev/mapper/vg0-root /               ext4    errors=remount-ro 0       1
        # /boot was on /dev/sda1 during installation
        /dev/sda1\t/boot\text2\tdefaults\t0\t2
        /dev/vg0/swap   none            swap    sw              0       0
        /dev/disk/by-id/dm-name-vg0-data  /data  ext4  defaults,nofail  0  2
        proc /proc proc defaults 0 0

        """

    @Test("stabilize-all changes only /dev/sda1 (/boot); LVM root, swap and data stay byte for byte")
    func fstabOnLVM() {
        let result = FstabRewriter(table: .fstab, mode: .stabilizeAll).rewrite(Self.fstab, resolve: answerEverything)
        let expected = Self.fstab.replacingOccurrences(of: "/dev/sda1\t/boot", with: "UUID=uuid-of-sda1\t/boot")
        #expect(result.text == expected)
        #expect(result.edits == [TextEdit(line: 6, before: "/dev/sda1\t/boot\text2\tdefaults\t0\t2",
                                          after: "UUID=uuid-of-sda1\t/boot\text2\tdefaults\t0\t2")])
        #expect(result.unresolved.isEmpty)
        #expect(!FstabRewriter(table: .fstab, mode: .bypathOnly).rewrite(Self.fstab, resolve: answerEverything).changed)
    }

    @Test("crypttab over an LV keeps the LV path; a LUKS partition named by kernel name is stabilised")
    func crypttabOnLVM() {
        let text = "home_crypt /dev/vg0/home none luks\nswap_crypt /dev/mapper/vg0-swap /dev/urandom swap,cipher=aes-xts-plain64\nboot_crypt /dev/sda1 none luks\n"
        let result = FstabRewriter(table: .crypttab, mode: .stabilizeAll).rewrite(text, resolve: answerEverything)
        #expect(result.text == "home_crypt /dev/vg0/home none luks\nswap_crypt /dev/mapper/vg0-swap /dev/urandom swap,cipher=aes-xts-plain64\nboot_crypt UUID=uuid-of-sda1 none luks\n")
    }

    @Test("root=/dev/mapper/…, resume=/dev/<vg>/<lv> and rd.lvm.lv= are left alone on every command line")
    func commandLinesOnLVM() {
        let defaults = """
            GRUB_CMDLINE_LINUX_DEFAULT="quiet resume=/dev/vg0/swap"
            GRUB_CMDLINE_LINUX="root=/dev/mapper/vg0-root rd.lvm.lv=vg0/root console=ttyS0"

            """
        #expect(!KernelCommandLineRewriter.rewriteGrubDefaults(defaults, resolve: answerEverything).changed)
        let grubCfg = "\tlinux\t/vmlinuz-6.1.0-18-amd64 root=/dev/mapper/vg0-root ro rd.lvm.lv=vg0/root resume=/dev/vg0/swap\n"
        #expect(!KernelCommandLineRewriter.rewriteGrubConfig(grubCfg, resolve: answerEverything).changed)
        let bls = "options root=/dev/disk/by-id/dm-uuid-LVM-abc ro resume=/dev/disk/by-id/dm-name-rhel-swap rd.lvm.lv=rhel/root\n"
        #expect(!KernelCommandLineRewriter.rewriteBootLoaderEntry(bls, resolve: answerEverything).changed)
        // A kernel name next to an LVM root still changes, and only it.
        let mixed = KernelCommandLineRewriter.rewriteKernelCmdlineFile("root=/dev/mapper/vg0-root resume=/dev/sda2 ro\n", resolve: answerEverything)
        #expect(mixed.text == "root=/dev/mapper/vg0-root resume=UUID=uuid-of-sda2 ro\n")
    }
}
