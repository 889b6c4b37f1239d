import Foundation
import Testing
@testable import GuestFix
@testable import Stages

/// When the fix stage may leave the guest's slow tools unrun: `update-grub` after an
/// in-place grub.cfg edit that already boots on virtio, and the initramfs rebuild for an
/// image that already holds the virtio drivers. The real guest tests run both paths.
@Suite("Guest tools run only when they add something")
struct GuestToolSkipTests {
    static let uuid = "163b3bd3-074f-4c0a-aa1f-947ba5e2e19f"

    /// The shape grub-mkconfig writes on Debian 12, after our edit of its kernel lines.
    static func debianGrubConfig(kernels: [String] = ["6.1.0-50-amd64"], root: String = "UUID=\(uuid)",
                                 search: Bool = true) -> String {
        var text = "### BEGIN /etc/grub.d/10_linux ###\nfunction gfxmode {\n\tset gfxpayload=\"${1}\"\n}\n"
        for kernel in kernels {
            text += "menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class os {\n"
            text += "\tinsmod part_msdos\n\tinsmod ext2\n\tset root='hd0,msdos1'\n"
            if search {
                text += "\tif [ x$feature_platform_search_hint = xy ]; then\n"
                text += "\t  search --no-floppy --fs-uuid --set=root --hint-bios=hd0,msdos1 \(uuid)\n\telse\n"
                text += "\t  search --no-floppy --fs-uuid --set=root \(uuid)\n\tfi\n"
            }
            text += "\techo\t'Loading Linux \(kernel) ...'\n"
            text += "\tlinux\t/boot/vmlinuz-\(kernel) root=\(root) ro  console=ttyS0\n"
            text += "\tinitrd\t/boot/initrd.img-\(kernel)\n}\n"
        }
        return text + "### END /etc/grub.d/10_linux ###\n"
    }

    @Test("an edited Debian grub.cfg that names root by UUID for exactly the installed kernels needs no update-grub")
    func editedDebianConfigSuffices() {
        let config = Self.debianGrubConfig(kernels: ["6.1.0-50-amd64", "6.1.0-49-amd64"])
        #expect(BootloaderFixer.reasonToRegenerate(editedConfig: config, installedKernels: ["6.1.0-49-amd64", "6.1.0-50-amd64"],
                                                   unresolved: []) == nil)
        // Labels, PARTUUIDs and LVM names are as stable as a UUID.
        for root in ["LABEL=root", "PARTUUID=0a1b2c3d-01", "/dev/mapper/vg0-root"] {
            #expect(BootloaderFixer.reasonToRegenerate(editedConfig: Self.debianGrubConfig(root: root),
                                                       installedKernels: ["6.1.0-50-amd64"], unresolved: []) == nil, "\(root)")
        }
    }

    @Test("update-grub still runs for every case the in-place edit cannot stand for")
    func regenerationReasons() throws {
        let installed = ["6.1.0-50-amd64"]
        func reason(_ config: String, installed: [String] = installed, unresolved: [String] = []) -> String? {
            BootloaderFixer.reasonToRegenerate(editedConfig: config, installedKernels: installed, unresolved: unresolved)
        }
        let unresolved = try #require(reason(Self.debianGrubConfig(), unresolved: ["/dev/sdz9"]))
        #expect(unresolved.contains("/dev/sdz9"))

        let stale = try #require(reason(Self.debianGrubConfig(kernels: ["6.1.0-50-amd64", "5.10.0-99-amd64"])))
        #expect(stale.contains("5.10.0-99-amd64") && stale.contains("not the installed kernels"))
        let missing = try #require(reason(Self.debianGrubConfig(), installed: ["6.1.0-50-amd64", "6.1.0-51-amd64"]))
        #expect(missing.contains("6.1.0-51-amd64"))

        let busName = try #require(reason(Self.debianGrubConfig(root: "/dev/sda1")))
        #expect(busName.contains("root=/dev/sda1"))
        let byPath = try #require(reason(Self.debianGrubConfig(root: "/dev/disk/by-path/pci-0000:00:10.0-scsi-0:0:0:0-part1")))
        #expect(byPath.contains("by-path"))
        let resume = Self.debianGrubConfig().replacingOccurrences(of: "ro  console", with: "ro resume=/dev/sda2 console")
        #expect(reason(resume)?.contains("resume=/dev/sda2") == true)

        let noRoot = Self.debianGrubConfig().replacingOccurrences(of: "root=UUID=\(Self.uuid) ", with: "")
        #expect(reason(noRoot)?.contains("no root=") == true)
        let unversioned = Self.debianGrubConfig().replacingOccurrences(of: "/boot/vmlinuz-6.1.0-50-amd64", with: "/vmlinuz")
        #expect(reason(unversioned)?.contains("no versioned kernel") == true)
        #expect(reason(Self.debianGrubConfig(search: false))?.contains("search") == true)

        // Fedora/RHEL: grub.cfg only says blscfg; the command lines live elsewhere (grubenv).
        let bls = "insmod blscfg\nblscfg\n### END /etc/grub.d/10_linux ###\n"
        #expect(reason(bls)?.contains("no kernel lines") == true)
        // Ubuntu's memtest86+ entry boots no Linux root: it does not count.
        let memtest = Self.debianGrubConfig() + "menuentry 'Memory test (memtest86+x64.bin)' {\n\tlinux16\t/boot/memtest86+x64.bin\n}\n"
        #expect(reason(memtest) == nil)
        // A commented-out kernel line is not an entry.
        let commented = Self.debianGrubConfig() + "#\tlinux\t/boot/vmlinuz-5.10.0-99-amd64 root=/dev/sda1\n"
        #expect(reason(commented) == nil)
    }

    @Test("device parameters are found as words of a command line, not inside other parameters")
    func deviceParameters() {
        let found = KernelCommandLineRewriter.deviceParameters(in: "\tlinux /vmlinuz-6 root=UUID=1 rd.root=x myroot=/dev/sda resume=/dev/sda2 ro")
        #expect(found.map(\.name) == ["root", "resume"])
        #expect(found.map(\.value) == ["UUID=1", "/dev/sda2"])
    }

    @Test("an initramfs image must hold each virtio module and what it depends on, by modules.dep")
    func initramfsModulesWithDependencies() {
        let dep = """
        kernel/drivers/virtio/virtio.ko:
        kernel/drivers/virtio/virtio_ring.ko:
        kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
        kernel/drivers/virtio/virtio_pci_modern_dev.ko:
        kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko
        kernel/drivers/block/virtio_blk.ko:
        kernel/drivers/scsi/virtio_scsi.ko:
        kernel/drivers/net/virtio_net.ko: kernel/net/core/failover.ko kernel/drivers/net/net_failover.ko
        kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
        kernel/net/core/failover.ko:
        kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko
        """
        let modules = InitramfsRegenerator.modules(modulesDep: dep, modulesBuiltin: "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n")
        #expect(modules == ["virtio_blk", "virtio_scsi", "virtio_net", "virtio_pci"])
        let needed = InitramfsRegenerator.withDependencies(modules, modulesDep: dep)
        // A rebuilt image is verified by what the disk needs: virtio_net may load later, from the root.
        #expect(InitramfsRegenerator.bootCritical(modules: modules, modulesDep: dep)
            == ["virtio_blk", "virtio_pci", "virtio_pci_legacy_dev", "virtio_pci_modern_dev"])
        #expect(InitramfsRegenerator.bootCritical(modules: ["virtio_scsi", "virtio_net"], modulesDep: dep).isEmpty,
                "drivers built in: nothing to verify")
        #expect(InitramfsRegenerator.bootCritical(modules: modules, modulesDep: nil) == ["virtio_blk", "virtio_pci"])
        #expect(needed == ["virtio_blk", "virtio_scsi", "virtio_net", "virtio_pci", "virtio_pci_legacy_dev",
                           "virtio_pci_modern_dev", "failover", "net_failover"])

        // What Debian's lsinitramfs prints for a MODULES=most image (compressed modules too).
        let listing = """
        usr/lib/modules/6.1.0-50-amd64/kernel/drivers/block/virtio_blk.ko
        usr/lib/modules/6.1.0-50-amd64/kernel/drivers/net/virtio_net.ko.xz
        usr/lib/modules/6.1.0-50-amd64/kernel/drivers/net/net_failover.ko
        usr/lib/modules/6.1.0-50-amd64/kernel/net/core/failover.ko
        usr/lib/modules/6.1.0-50-amd64/kernel/drivers/scsi/virtio_scsi.ko.zst
        usr/lib/modules/6.1.0-50-amd64/kernel/drivers/virtio
        usr/lib/modules/6.1.0-50-amd64/kernel/drivers/virtio/virtio_pci.ko
        usr/lib/modules/6.1.0-50-amd64/kernel/drivers/virtio/virtio_pci_legacy_dev.ko
        usr/lib/modules/6.1.0-50-amd64/kernel/drivers/virtio/virtio_pci_modern_dev.ko
        usr/lib/modules/6.1.0-50-amd64/modules.dep
        """
        let inside = InitramfsRegenerator.moduleNames(in: listing, takeKeysOnly: false)
        #expect(needed.isSubset(of: inside))
        // A MODULES=dep image made on VMware: no virtio at all, so it is rebuilt.
        let vmwareOnly = InitramfsRegenerator.moduleNames(in: "usr/lib/modules/6.1.0-50-amd64/kernel/drivers/scsi/vmw_pvscsi.ko\n", takeKeysOnly: false)
        #expect(!needed.isSubset(of: vmwareOnly))
        // A dependency missing is as bad as the module missing: modprobe would fail at boot.
        let withoutDependency = InitramfsRegenerator.moduleNames(
            in: listing.replacingOccurrences(of: "virtio_pci_modern_dev", with: "other"), takeKeysOnly: false)
        #expect(!needed.isSubset(of: withoutDependency))
    }
}
