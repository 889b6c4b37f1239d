import TestSupport
import Foundation
import Testing
@testable import GuestFix
@testable import Stages

/// A resolver as the appliance would answer for a guest with one disk:
/// sda1 ext4, sda2 swap, sda3 ext4 mounted on /srv; no second disk.
private func fakeResolve(_ reference: DeviceReference) -> String? {
    let uuids = ["/dev/sda1": "UUID=1111", "/dev/sda2": "UUID=2222", "/dev/sda3": "UUID=3333", "/dev/sda": "PARTUUID=dead"]
    switch reference.kind {
    case .kernelName:
        return reference.kind.applianceDevice.flatMap { uuids[$0] }
    case let .byPath(partition), let .byID(partition):
        if reference.mountpoint == "/srv" { return uuids["/dev/sda3"] }
        return partition.flatMap { uuids["/dev/sda\($0)"] }
    default:
        return nil
    }
}

@Suite("GuestFix rewriters")
struct GuestFixRewriterTests {
    // MARK: device specs

    @Test("device specs are classified by how stable they are", arguments: [
        ("/dev/sda1", BlockDeviceSpec.kernelName(disk: 0, partition: 1)),
        ("/dev/sdb", .kernelName(disk: 1, partition: nil)),
        ("/dev/hdc2", .kernelName(disk: 2, partition: 2)),
        ("/dev/xvda1", .kernelName(disk: 0, partition: 1)),
        ("/dev/vdb3", .kernelName(disk: 1, partition: 3)),
        ("/dev/sdaa1", .kernelName(disk: 26, partition: 1)),
        ("/dev/nvme0n1p2", .kernelName(disk: 0, partition: 2)),
        ("/dev/nvme1n1", .kernelName(disk: 1, partition: nil)),
        ("/dev/cciss/c0d0p1", .kernelName(disk: 0, partition: 1)),
        ("/dev/disk/by-path/pci-0000:00:10.0-scsi-0:0:0:0-part3", .byPath(partition: 3)),
        ("/dev/disk/by-id/ata-VMware_Virtual_IDE_Hard_Drive_00000000000000000001-part1", .byID(partition: 1)),
        ("/dev/disk/by-id/wwn-0x6000c29", .byID(partition: nil)),
        ("UUID=abc", .stable), ("uuid=abc", .stable), ("PARTUUID=x", .stable), ("LABEL=root", .stable),
        ("/dev/disk/by-uuid/abc", .stable), ("/dev/mapper/vg-root", .stable),
        ("/dev/vg0/root", .other), ("proc", .other), ("tmpfs", .other), ("/dev/cdrom", .other), ("/dev/sr0", .other),
        ("server:/export", .other),
    ])
    func classify(spec: String, expected: BlockDeviceSpec) {
        #expect(BlockDeviceSpec(spec) == expected)
    }

    @Test("appliance names follow the disk order")
    func applianceNames() {
        #expect(BlockDeviceSpec("/dev/hdb2").applianceDevice == "/dev/sdb2")
        #expect(BlockDeviceSpec("/dev/nvme0n1p1").applianceDevice == "/dev/sda1")
        #expect(BlockDeviceSpec("/dev/xvdz").applianceDevice == "/dev/sdz")
        #expect(BlockDeviceSpec.diskLetters(27) == "ab")
        #expect(BlockDeviceSpec.diskIndex("ab") == 27)
    }

    @Test("fstab_mode decides what is rewritten")
    func modes() {
        #expect(BlockDeviceSpec("/dev/sda1").needsStabilising(in: .stabilizeAll))
        #expect(!BlockDeviceSpec("/dev/sda1").needsStabilising(in: .bypathOnly))
        #expect(BlockDeviceSpec("/dev/disk/by-id/x-part1").needsStabilising(in: .bypathOnly))
        #expect(!BlockDeviceSpec("/dev/disk/by-id/x-part1").needsStabilising(in: .noop))
        #expect(!BlockDeviceSpec("UUID=1").needsStabilising(in: .stabilizeAll))
    }

    // MARK: fstab / crypttab

    static let fstab = """
        # /etc/fstab: static file system information.
        #
        # <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>
        /dev/sda1\t/\text4\terrors=remount-ro\t0\t1
        # swap was on /dev/sda2 during installation
          /dev/sda2  none   swap    sw   0   0
        /dev/disk/by-path/pci-0000:00:10.0-scsi-0:0:0:0-part3  /srv  ext4  defaults,nofail  0  2
        /dev/sdc1\t/data\text4\tdefaults,nofail\t0\t2
        UUID=1111 /already ext4 defaults 0 0
        proc /proc proc defaults 0 0
        /dev/cdrom /media/cdrom0 udf,iso9660 user,noauto 0 0

        """

    @Test("stabilize-all rewrites every bus name, keeps comments and spacing, reports unknown disks")
    func fstabStabilizeAll() {
        let result = FstabRewriter(table: .fstab, mode: .stabilizeAll).rewrite(Self.fstab, resolve: fakeResolve)
        let expected = """
            # /etc/fstab: static file system information.
            #
            # <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>
            UUID=1111\t/\text4\terrors=remount-ro\t0\t1
            # swap was on /dev/sda2 during installation
              UUID=2222  none   swap    sw   0   0
            UUID=3333  /srv  ext4  defaults,nofail  0  2
            /dev/sdc1\t/data\text4\tdefaults,nofail\t0\t2
            UUID=1111 /already ext4 defaults 0 0
            proc /proc proc defaults 0 0
            /dev/cdrom /media/cdrom0 udf,iso9660 user,noauto 0 0

            """
        #expect(result.text == expected)
        #expect(result.edits.map(\.line) == [4, 6, 7])
        #expect(result.unresolved == ["/dev/sdc1"])
    }

    @Test("bypath-only leaves kernel names; noop leaves everything")
    func fstabOtherModes() {
        let bypath = FstabRewriter(table: .fstab, mode: .bypathOnly).rewrite(Self.fstab, resolve: fakeResolve)
        #expect(bypath.edits.count == 1)
        #expect(bypath.text.contains("UUID=3333  /srv  ext4"))
        #expect(bypath.text.contains("/dev/sda1\t/\text4"))
        let noop = FstabRewriter(table: .fstab, mode: .noop).rewrite(Self.fstab, resolve: fakeResolve)
        #expect(noop.text == Self.fstab)
        #expect(!noop.changed)
    }

    @Test("crypttab rewrites the device column, not the name")
    func crypttab() {
        let text = """
            # <target name> <source device> <key file> <options>
            sda3_crypt /dev/sda3 none luks,discard
            home_crypt UUID=abcd none luks
            """
        let result = FstabRewriter(table: .crypttab, mode: .stabilizeAll).rewrite(text, resolve: fakeResolve)
        #expect(result.text == """
            # <target name> <source device> <key file> <options>
            sda3_crypt UUID=3333 none luks,discard
            home_crypt UUID=abcd none luks
            """)
    }

    @Test("an fstab with nothing to fix is unchanged")
    func fstabNothingToFix() {
        let text = "UUID=1 / ext4 defaults 0 1\nLABEL=swap none swap sw 0 0\n"
        let result = FstabRewriter(table: .fstab, mode: .stabilizeAll).rewrite(text, resolve: fakeResolve)
        #expect(result.text == text)
        #expect(!result.changed)
    }

    // MARK: kernel command lines

    @Test("root= and resume= are rewritten in place; other parameters and quotes stay")
    func commandLine() {
        let (text, unresolved) = KernelCommandLineRewriter.rewriteParameters(
            in: "ro root=/dev/sda1 quiet resume=/dev/sda2 console=ttyS0 noresume=/dev/sda2 root=/dev/sdq1",
            resolve: fakeResolve)
        #expect(text == "ro root=UUID=1111 quiet resume=UUID=2222 console=ttyS0 noresume=/dev/sda2 root=/dev/sdq1")
        #expect(unresolved == ["/dev/sdq1"])
    }

    @Test("/etc/default/grub: both cmdline variables, GRUB_DISABLE_LINUX_UUID undone, comments kept")
    func grubDefaults() {
        let text = """
            # root=/dev/sda1 in a comment stays
            GRUB_DEFAULT=0
            GRUB_CMDLINE_LINUX_DEFAULT="quiet resume=/dev/sda2"
            GRUB_CMDLINE_LINUX="root=/dev/sda1 console=ttyS0"
            export GRUB_CMDLINE_LINUX_DEFAULT='root=/dev/disk/by-id/ata-X-part1'
            GRUB_DISABLE_LINUX_UUID=true
            GRUB_TERMINAL=console
            """
        let result = KernelCommandLineRewriter.rewriteGrubDefaults(text, resolve: fakeResolve)
        #expect(result.text == """
            # root=/dev/sda1 in a comment stays
            GRUB_DEFAULT=0
            GRUB_CMDLINE_LINUX_DEFAULT="quiet resume=UUID=2222"
            GRUB_CMDLINE_LINUX="root=UUID=1111 console=ttyS0"
            export GRUB_CMDLINE_LINUX_DEFAULT='root=UUID=1111'
            #GRUB_DISABLE_LINUX_UUID=true  # commented out by hyper2kvm: root= must not name a bus-dependent device
            GRUB_TERMINAL=console
            """)
        #expect(result.edits.map(\.line) == [3, 4, 5, 6])
    }

    @Test("grub.cfg: linux lines only, grub's own set root= untouched")
    func grubConfig() {
        let text = """
            menuentry 'Debian' {
            \tset root='hd0,msdos1'
            \tsearch --no-floppy --fs-uuid --set=root 1111
            \tlinux\t/boot/vmlinuz-6.1.0-18-amd64 root=UUID=1111 ro root=/dev/sda1 quiet
            \tlinux16 /vmlinuz resume=/dev/hda2
            \tinitrd\t/boot/initrd.img-6.1.0-18-amd64
            }
            """
        let result = KernelCommandLineRewriter.rewriteGrubConfig(text, resolve: fakeResolve)
        #expect(result.text == """
            menuentry 'Debian' {
            \tset root='hd0,msdos1'
            \tsearch --no-floppy --fs-uuid --set=root 1111
            \tlinux\t/boot/vmlinuz-6.1.0-18-amd64 root=UUID=1111 ro root=UUID=1111 quiet
            \tlinux16 /vmlinuz resume=UUID=2222
            \tinitrd\t/boot/initrd.img-6.1.0-18-amd64
            }
            """)
    }

    @Test("BLS entries and /etc/kernel/cmdline")
    func blsAndKernelCmdline() {
        let entry = "title Fedora\nversion 6.8\nlinux /vmlinuz-6.8\noptions root=/dev/vda2 ro rhgb\n"
        #expect(KernelCommandLineRewriter.rewriteBootLoaderEntry(entry, resolve: fakeResolve).text
            == "title Fedora\nversion 6.8\nlinux /vmlinuz-6.8\noptions root=UUID=2222 ro rhgb\n")
        #expect(KernelCommandLineRewriter.rewriteKernelCmdlineFile("root=/dev/sda1 rw\n", resolve: fakeResolve).text
            == "root=UUID=1111 rw\n")
    }

    // MARK: initramfs configuration

    @Test("modules are taken from modules.dep, built-ins are skipped")
    func initramfsModules() {
        let dep = """
            kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio.ko.xz
            kernel/drivers/scsi/virtio_scsi.ko:
            kernel/drivers/net/virtio_net.ko: kernel/net/core/failover.ko
            kernel/drivers/virtio/virtio_pci.ko:
            kernel/drivers/virtio/virtio.ko:
            """
        let builtin = "kernel/drivers/virtio/virtio_ring.ko\n"
        #expect(InitramfsRegenerator.modules(modulesDep: dep, modulesBuiltin: builtin)
            == ["virtio_blk", "virtio_scsi", "virtio_net", "virtio_pci", "virtio"])
        #expect(InitramfsRegenerator.modules(modulesDep: nil, modulesBuiltin: nil) == InitramfsRegenerator.requiredModules)
    }

    @Test("initramfs-tools modules file gets only the missing modules")
    func initramfsToolsFile() {
        let text = "# List of modules\nsd_mod\nvirtio_blk\n"
        let updated = InitramfsRegenerator.initramfsToolsModules(text, adding: ["virtio_blk", "virtio_pci"])
        #expect(updated == text + "# Added by hyper2kvm: virtio drivers for the KVM disk and network.\nvirtio_pci\n")
        #expect(InitramfsRegenerator.initramfsToolsModules(text, adding: ["virtio_blk"]) == nil)
    }

    @Test("dracut drop-in and mkinitcpio MODULES")
    func dracutAndMkinitcpio() {
        #expect(InitramfsRegenerator.dracutConfig(modules: ["virtio_blk", "virtio_pci"]).contains("add_drivers+=\" virtio_blk virtio_pci \""))
        let conf = "# vim:set ft=sh\nMODULES=(ext4 virtio_blk)\nHOOKS=(base udev)\n"
        let result = InitramfsRegenerator.mkinitcpioConfig(conf, adding: ["virtio_blk", "virtio_pci"])
        #expect(result?.text == "# vim:set ft=sh\nMODULES=(ext4 virtio_blk virtio_pci)\nHOOKS=(base udev)\n")
        #expect(InitramfsRegenerator.mkinitcpioConfig("MODULES=(virtio_pci)\n", adding: ["virtio_pci"]) == nil)
    }

    @Test("free space needed covers the old image and the new one")
    func bootSpace() {
        let mib: Int64 = 1_048_576
        #expect(InitramfsRegenerator.requiredBootSpace(currentImageBytes: 40 * mib) == 74 * mib)
    }

    // MARK: network

    @Test("ifupdown: hwaddress commented out, interface names collected")
    func ifupdown() {
        let text = """
            auto lo
            iface lo inet loopback

            allow-hotplug ens192
            iface ens192 inet dhcp
                hwaddress ether 00:50:56:8a:12:34
            """
        let result = NetworkPinningRemover.ifupdown(text)
        #expect(result.interfaceNames == ["ens192"])
        #expect(result.rewrite.text.contains("    # hwaddress ether 00:50:56:8a:12:34  # removed by hyper2kvm"))
        #expect(!result.rewrite.text.contains("\n    hwaddress"))
        #expect(result.rewrite.edits.count == 1)
    }

    @Test("ifcfg: HWADDR and MACADDR commented out")
    func ifcfg() {
        let text = "DEVICE=\"ens160\"\nBOOTPROTO=dhcp\nHWADDR=00:50:56:aa:bb:cc\nMACADDR=00:50:56:aa:bb:cc\nONBOOT=yes\n"
        let result = NetworkPinningRemover.ifcfg(text)
        #expect(result.interfaceNames == ["ens160"])
        #expect(result.rewrite.edits.count == 2)
        #expect(!result.rewrite.text.contains("\nHWADDR="))
        #expect(result.rewrite.text.contains("ONBOOT=yes"))
        // SUSE's wicked names the interface by the file only.
        let wicked = "BOOTPROTO='static'\nSTARTMODE='auto'\nIPADDR='192.168.10.23/24'\n"
        #expect(NetworkPinningRemover.ifcfg(wicked, path: "/etc/sysconfig/network/ifcfg-eth0").interfaceNames == ["eth0"])
        #expect(NetworkPinningRemover.ifcfg("DEVICE=ens192\n", path: "/etc/sysconfig/network-scripts/ifcfg-old").interfaceNames == ["ens192"])
        #expect(NetworkPinningRemover.ifcfg("ONBOOT=yes\n", path: "/etc/sysconfig/network/ifcfg-lo").interfaceNames.isEmpty)
    }

    @Test("netplan: macaddress removed, an empty match goes with its set-name")
    func netplan() {
        let text = """
            network:
              version: 2
              ethernets:
                ens192:
                  match:
                    macaddress: 00:50:56:8a:12:34
                  set-name: ens192
                  dhcp4: true
                ens224:
                  macaddress: 00:50:56:00:00:01
                  match:
                    driver: vmxnet3
                    macaddress: 00:50:56:00:00:02
                  addresses: [10.0.0.2/24]
            """
        let result = NetworkPinningRemover.netplan(text)
        #expect(result.interfaceNames == ["ens192", "ens224"])
        #expect(result.rewrite.text == """
            network:
              version: 2
              ethernets:
                ens192:
                  dhcp4: true
                ens224:
                  match:
                    driver: vmxnet3
                  addresses: [10.0.0.2/24]
            """)
    }

    @Test("NetworkManager keyfile: mac-address commented out")
    func networkManager() {
        let text = "[connection]\nid=Wired\ntype=ethernet\ninterface-name=ens33\n\n[ethernet]\nmac-address=00:0C:29:12:34:56\ncloned-mac-address=preserve\n"
        let result = NetworkPinningRemover.networkManager(text)
        #expect(result.interfaceNames == ["ens33"])
        #expect(result.rewrite.edits.count == 1)
        #expect(result.rewrite.text.contains("cloned-mac-address=preserve"))
        #expect(!result.rewrite.text.contains("\nmac-address="))
    }

    @Test("networkd: a MAC-only [Match] gets a replacement condition")
    func networkd() {
        let network = "[Match]\nMACAddress=00:50:56:8a:12:34\n\n[Network]\nDHCP=yes\n"
        let result = NetworkPinningRemover.systemdNetwork(network, isLinkFile: false)
        #expect(result.rewrite.text == "[Match]\nType=ether  # added by hyper2kvm: the MACAddress= match was removed\n#MACAddress=00:50:56:8a:12:34  # removed by hyper2kvm\n\n[Network]\nDHCP=yes\n")
        let link = "[Match]\nMACAddress=00:50:56:8a:12:34\n[Link]\nName=lan0\n"
        let linkResult = NetworkPinningRemover.systemdNetwork(link, isLinkFile: true)
        #expect(linkResult.interfaceNames == ["lan0"])
        #expect(linkResult.rewrite.text.contains("Driver=virtio_net"))
        let named = "[Match]\nName=ens192\nMACAddress=00:50:56:8a:12:34\n[Network]\nDHCP=yes\n"
        let namedResult = NetworkPinningRemover.systemdNetwork(named, isLinkFile: false)
        #expect(!namedResult.rewrite.text.contains("Type=ether"))
        #expect(namedResult.interfaceNames == ["ens192"])
    }

    @Test("one interface name is pinned to the virtio NIC; several are not")
    func namePinning() {
        #expect(NetworkPinningRemover.nameToPreserve(["ens192", "ens192"]).name == "ens192")
        #expect(NetworkPinningRemover.nameToPreserve(["ens192", "ens224"]).name == nil)
        #expect(NetworkPinningRemover.nameToPreserve([]).name == nil)
        let link = NetworkPinningRemover.virtioLinkFile(naming: "ens192")
        #expect(link.contains("[Match]\nDriver=virtio_net\n"))
        #expect(link.contains("[Link]\nName=ens192\n"))
    }

    @Test("VMware tools removal command by package format")
    func vmwareToolsRemoval() {
        #expect(HypervisorLeftoversRemover.removalCommand(packageFormat: "deb", installed: ["open-vm-tools"]) == ["dpkg", "--purge", "open-vm-tools"])
        #expect(HypervisorLeftoversRemover.removalCommand(packageFormat: "rpm", installed: ["open-vm-tools"]) == ["rpm", "-e", "--nodeps", "open-vm-tools"])
        #expect(HypervisorLeftoversRemover.removalCommand(packageFormat: "deb", installed: []) == nil)
        #expect(HypervisorLeftoversRemover.removalCommand(packageFormat: "apk", installed: ["open-vm-tools"]) == nil)
    }

    @Test("reports round-trip through JSON")
    func reportCodable() throws {
        let report = GuestFixReport(
            inspection: GuestInspection(type: "linux", distro: "debian", productName: "Debian 12", majorVersion: 12, minorVersion: 5,
                                        arch: "x86_64", packageFormat: "deb", packageManagement: "apt", rootDevice: "/dev/sda1",
                                        mountpoints: ["/": "/dev/sda1"], hostname: "h", osinfo: "debian12", installedKernels: ["6.1.0-18-amd64"]),
            changes: [GuestFixChange(area: "fstab", file: "/etc/fstab", before: "/dev/sda1 /", after: "UUID=1 /")],
            skipped: [SkippedGuestFix(area: "initramfs", reason: "off")],
            durations: [.init(step: "launch", seconds: 12.5)])
        let decoded = try JSONDecoder().decode(GuestFixReport.self, from: try JSONEncoder().encode(report))
        #expect(decoded == report)
    }
}
