import Foundation
import Testing
@testable import GuestFix
@testable import Stages

/// The boot chain's pure decisions: boot loader entries, where their files are, fstab names
/// against the source's own disks, BIOS or UEFI from disk facts, and the firmware precedence.
@Suite("Boot chain decisions")
struct BootChainDecisionTests {
    // MARK: - Boot entries

    /// grub-mkconfig's shape on Debian 12 with /boot on its own partition: paths relative to /boot.
    static let separateBootGrub = """
        set default="0"
        search --no-floppy --fs-uuid --set=root 1111-boot
        menuentry 'Debian GNU/Linux' --class debian --class gnu-linux $menuentry_id_option 'gnulinux-simple-x' {
        \tload_video
        \tinsmod ext2
        \tif [ x$feature_platform_search_hint = xy ]; then
        \t  search --no-floppy --fs-uuid --set=root --hint-bios=hd0,msdos1 1111-boot
        \telse
        \t  search --no-floppy --fs-uuid --set=root 1111-boot
        \tfi
        \techo\t'Loading Linux 6.1.0-18-amd64 ...'
        \tlinux\t/vmlinuz-6.1.0-18-amd64 root=/dev/mapper/vg0-root ro  quiet
        \techo\t'Loading initial ramdisk ...'
        \tinitrd\t/initrd.img-6.1.0-18-amd64
        }
        submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option 'gnulinux-advanced-x' {
        \tmenuentry 'Debian GNU/Linux, with Linux 6.1.0-17-amd64' --class debian {
        \t\tlinux\t/vmlinuz-6.1.0-17-amd64 root=/dev/mapper/vg0-root ro single
        \t\tinitrd\t/initrd.img-6.1.0-17-amd64
        \t}
        }
        menuentry 'Memory test (memtest86+x64.efi)' {
        \tlinux16\t/memtest86+x64.bin
        }
        """

    @Test("grub.cfg menuentries: kernel, initrd, options and the search UUID, default first; submenus and linux16 entries read")
    func grubEntries() throws {
        let entries = BootEntryParser.grubEntries(Self.separateBootGrub, config: "/boot/grub/grub.cfg")
        #expect(entries.map(\.kernel) == ["/vmlinuz-6.1.0-18-amd64", "/vmlinuz-6.1.0-17-amd64", "/memtest86+x64.bin"])
        let first = try #require(entries.first)
        #expect(first.title == "Debian GNU/Linux")
        #expect(first.initrds == ["/initrd.img-6.1.0-18-amd64"])
        #expect(first.options == "root=/dev/mapper/vg0-root ro quiet")
        #expect(first.searchUUID == "1111-boot")
        #expect(first.kernelVersion == "6.1.0-18-amd64")
        #expect(entries[1].initrds == ["/initrd.img-6.1.0-17-amd64"])
        #expect(entries[2].kernelVersion == nil)
    }

    @Test("grub device prefixes, linuxefi/initrdefi and several initrds")
    func grubVariants() {
        let text = "menuentry 'RHEL' {\n  linuxefi ($root)/vmlinuz-5.14.0-362.el9.x86_64 root=UUID=abc\n  initrdefi (hd0,gpt2)/intel-ucode.img /initramfs-5.14.0-362.el9.x86_64.img\n}\n"
        let entries = BootEntryParser.grubEntries(text, config: "/boot/efi/EFI/redhat/grub.cfg")
        #expect(entries.first?.kernel == "/vmlinuz-5.14.0-362.el9.x86_64")
        #expect(entries.first?.initrds == ["/intel-ucode.img", "/initramfs-5.14.0-362.el9.x86_64.img"])
        #expect(entries.first?.searchUUID == nil)
    }

    @Test("a BLS entry (RHEL 9 layout from the Boot Loader Specification) and a blscfg grub.cfg")
    func blsEntry() throws {
        let text = """
            title Red Hat Enterprise Linux (5.14.0-362.8.1.el9_3.x86_64) 9.3 (Plow)
            version 5.14.0-362.8.1.el9_3.x86_64
            linux /vmlinuz-5.14.0-362.8.1.el9_3.x86_64
            initrd /initramfs-5.14.0-362.8.1.el9_3.x86_64.img $tuned_initrd
            options root=/dev/mapper/rhel-root ro crashkernel=1G-4G:192M resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root
            grub_users $grub_users
            grub_arg --unrestricted
            grub_class rhel
            """
        let entry = try #require(BootEntryParser.blsEntry(text, config: "/boot/loader/entries/abc-5.14.0.conf"))
        #expect(entry.kernel == "/vmlinuz-5.14.0-362.8.1.el9_3.x86_64")
        #expect(entry.initrds == ["/initramfs-5.14.0-362.8.1.el9_3.x86_64.img", "$tuned_initrd"])
        #expect(entry.options.hasPrefix("root=/dev/mapper/rhel-root ro"))
        #expect(BootEntryParser.usesBLS("insmod blscfg\nblscfg\n"))
        #expect(!BootEntryParser.usesBLS(Self.separateBootGrub))
        #expect(BootEntryParser.blsEntry("title nothing\n", config: "x") == nil)
    }

    @Test("entry paths are relative to the filesystem grub reads: /boot when separate, / otherwise, or the searched UUID")
    func bootPaths() {
        let entry = BootEntry(config: "/boot/grub/grub.cfg", title: "", kernel: "/vmlinuz-6.1", initrds: [], options: "", searchUUID: nil)
        let separate = BootPathResolver(filesystems: ["/": "root-uuid", "/boot": "boot-uuid"])
        #expect(separate.guestPath("/vmlinuz-6.1", in: entry) == "/boot/vmlinuz-6.1")
        #expect(separate.guestPath("/initrd.img-6.1", in: entry) == "/boot/initrd.img-6.1")
        let single = BootPathResolver(filesystems: ["/": "root-uuid"])
        #expect(single.guestPath("/boot/vmlinuz-6.1", in: entry) == "/boot/vmlinuz-6.1")
        // grub.cfg on the ESP searching /boot by its UUID.
        var efi = entry
        efi.config = "/boot/efi/EFI/redhat/grub.cfg"
        efi.searchUUID = "BOOT-UUID"
        let three = BootPathResolver(filesystems: ["/": "r", "/boot": "boot-uuid", "/boot/efi": "ABCD-1234"])
        #expect(three.guestPath("/vmlinuz-6.1", in: efi) == "/boot/vmlinuz-6.1")
        #expect(three.mountpoint(holding: "/boot/efi/EFI/x") == "/boot/efi")
        #expect(three.mountpoint(holding: "/bootx") == "/")
        // SUSE's btrfs: /var, /home and /.snapshots are subvolumes with the root's UUID; grub
        // reads from the default subvolume, where its config is, never from /var.
        var suse = entry
        suse.config = "/boot/grub2/grub.cfg"
        suse.searchUUID = "BTRFS-UUID"
        let subvolumes = BootPathResolver(filesystems: ["/": "btrfs-uuid", "/var": "btrfs-uuid", "/home": "btrfs-uuid",
                                                        "/.snapshots": "btrfs-uuid", "/boot/grub2/i386-pc": "btrfs-uuid"])
        for _ in 0..<8 { #expect(subvolumes.guestPath("/boot/initrd-5.14.21-default", in: suse) == "/boot/initrd-5.14.21-default") }

        // Debian's btrfs: root in subvolume @, /home in @home; grub-mkconfig writes paths from
        // the filesystem's top level (/@/boot/…), which are /boot/… in the mounted guest.
        let fstab = FstabEntry.parse("""
            UUID=b7f3 / btrfs defaults,subvol=@ 0 0
            UUID=b7f3 /home btrfs defaults,subvol=/@home 0 0
            """)
        let debian = BootPathResolver(filesystems: ["/": "", "/home": ""], subvolumes: BootPathResolver.subvolumes(of: fstab))
        #expect(debian.subvolumes == ["/": "@", "/home": "@home"])
        var grub = entry
        grub.searchUUID = "b7f3"
        #expect(debian.guestPath("/@/boot/initrd.img-6.1.0-18-amd64", in: grub) == "/boot/initrd.img-6.1.0-18-amd64")
        #expect(debian.guestPath("/@home/user/x", in: grub) == "/home/user/x")
        #expect(debian.guestPath("/boot/vmlinuz-6.1.0-18-amd64", in: grub) == "/boot/vmlinuz-6.1.0-18-amd64")
    }

    @Test("initramfs targets come from the entries, never from a generator's naming; microcode and uninstalled kernels left out")
    func initramfsTargets() {
        func resolved(_ kernel: String, _ initrds: [String]) -> ResolvedBootEntry {
            ResolvedBootEntry(entry: BootEntry(config: "/boot/grub/grub.cfg", title: "", kernel: kernel, initrds: initrds, options: "", searchUUID: nil),
                              kernel: kernel, initrds: initrds, version: BootEntry.version(ofKernelFile: kernel))
        }
        let entries = [
            resolved("/boot/vmlinuz-6.1.0-18-amd64", ["/boot/early_ucode.cpio", "/boot/initrd.img-6.1.0-18-amd64"]),
            resolved("/boot/vmlinuz-6.1.0-18-amd64", ["/boot/initrd.img-6.1.0-18-amd64"]),
            resolved("/boot/vmlinuz-5.10.0-9-amd64", ["/boot/initrd.img-5.10.0-9-amd64"]),
        ]
        let targets = InitramfsRegenerator.targets(entries: entries, installedKernels: ["6.1.0-18-amd64"])
        #expect(targets == [.init(version: "6.1.0-18-amd64", image: "/boot/initrd.img-6.1.0-18-amd64")])
        // The dracut guest whose grub loads initrd.img-<v>: dracut writes that very file.
        #expect(InitramfsRegenerator.rebuildCommand(.dracut, target: targets[0])
            == ["dracut", "-f", "/boot/initrd.img-6.1.0-18-amd64", "6.1.0-18-amd64"])
        #expect(InitramfsRegenerator.rebuildCommand(.initramfsTools, target: targets[0]) == ["update-initramfs", "-u", "-k", "6.1.0-18-amd64"])
        #expect(InitramfsRegenerator.rebuildCommand(.initramfsTools, target: .init(version: "6.1", image: "/boot/initramfs-6.1.img"))
            == ["mkinitramfs", "-o", "/boot/initramfs-6.1.img", "6.1"])
    }

    // MARK: - fstab names against the source's disks

    static let devices = GuestDeviceMap(devices: [
        GuestBlockDevice(device: "/dev/sda", disk: 0, partition: nil, type: "PTTYPE"),
        GuestBlockDevice(device: "/dev/sda1", disk: 0, partition: 1, uuid: "B00T-UUID", partUUID: "0a1b2c3d-01", label: "boot", type: "ext2"),
        GuestBlockDevice(device: "/dev/sda2", disk: 0, partition: 2, uuid: "pv-uuid", partUUID: "0a1b2c3d-02", type: "LVM2_member"),
        GuestBlockDevice(device: "/dev/sdb", disk: 1, partition: nil),
        GuestBlockDevice(device: "/dev/sdb1", disk: 1, partition: 1, uuid: "data-uuid", label: "my data", partLabel: "data", type: "xfs"),
        GuestBlockDevice(device: "/dev/vg0/root", uuid: "root-uuid", type: "ext4", logicalVolume: "vg0/root",
                         deviceMapperUUID: GuestDeviceMap.lvmDeviceMapperUUID(group: "bs9NTo-f5ck-ANJa-3Bic-sTG9-wfTO-QkndMd",
                                                                              volume: "XS6tko-LdlE-jPzU-H3fl-UPiW-Aprc-hkmd2P")),
        GuestBlockDevice(device: "/dev/my-vg/lv-1", uuid: "lv1-uuid", type: "ext4", logicalVolume: "my-vg/lv-1"),
    ])

    @Test("every naming scheme resolves against the source's own disks", arguments: [
        ("UUID=b00t-uuid", "/dev/sda1"), ("UUID=\"B00T-UUID\"", "/dev/sda1"), ("/dev/disk/by-uuid/B00T-UUID", "/dev/sda1"),
        ("PARTUUID=0A1B2C3D-01", "/dev/sda1"), ("/dev/disk/by-partuuid/0a1b2c3d-01", "/dev/sda1"),
        ("LABEL=boot", "/dev/sda1"), ("/dev/disk/by-label/my\\x20data", "/dev/sdb1"), ("PARTLABEL=data", "/dev/sdb1"),
        ("/dev/mapper/vg0-root", "/dev/vg0/root"), ("/dev/vg0/root", "/dev/vg0/root"), ("/dev/disk/by-id/dm-name-vg0-root", "/dev/vg0/root"),
        ("/dev/mapper/my--vg-lv--1", "/dev/my-vg/lv-1"),
        // Ubuntu's installer (curtin) names the root by its device-mapper UUID link.
        ("/dev/disk/by-id/dm-uuid-LVM-bs9NTof5ckANJa3BicsTG9wfTOQkndMdXS6tkoLdlEjPzUH3flUPiWAprchkmd2P", "/dev/vg0/root"),
        ("/dev/sda1", "/dev/sda1"), ("/dev/sdb1", "/dev/sdb1"), ("/dev/hdb1", "/dev/sdb1"), ("/dev/nvme0n1p2", "/dev/sda2"),
    ])
    func resolvesNames(spec: String, device: String) {
        #expect(Self.devices.resolve(spec) == .device(device))
    }

    @Test("by-path and by-id links are placed by their partition number when only one disk partition fits")
    func controllerLinks() {
        let single = GuestDeviceMap(devices: Self.devices.devices.filter { $0.disk != 1 })
        #expect(single.resolve("/dev/disk/by-path/pci-0000:00:10.0-scsi-0:0:0:0-part1") == .device("/dev/sda1"))
        #expect(single.resolve("/dev/disk/by-id/scsi-36000c29a5b3c7d8e9f0a1b2c3d4e5f60-part2") == .device("/dev/sda2"))
        // Two disks with a partition 1: the controller slot cannot be decoded, so no guess.
        guard case .unresolved(let reason) = Self.devices.resolve("/dev/disk/by-path/pci-0000:00:10.0-scsi-0:0:1:0-part1") else {
            Issue.record("an ambiguous by-path link resolved")
            return
        }
        #expect(reason.contains("2 disks"))
        #expect(Self.devices.resolve("/dev/disk/by-path/pci-0000:00:10.0-scsi-0:0:0:0-part2") == .device("/dev/sda2"))
        #expect(Self.devices.resolve("UUID=gone").device == nil)
        #expect(Self.devices.resolve("/dev/sdc1").device == nil)
    }

    /// `mdadm --detail --export` as libguestfs returns it for an array created in the
    /// appliance (`md-create md0 …`) and for one a Debian installer made on host "web01".
    static let applianceArray = ["level": "raid1", "devices": "2", "metadata": "1.2", "uuid": "8ef4498a:a730c2f6:602e9b89:34b30eef",
                                 "devname": "md0", "name": "(none):md0"]
    static let installerArray = ["level": "raid1", "metadata": "1.2", "uuid": "5C3B2A10:0D9E8F7A:6B5C4D3E:2F1A0B9C", "name": "web01:0"]

    @Test("an md array answers to udev's links, /dev/md/<name>, /dev/mdN for a numeric name, and mdadm.conf's names")
    func mdArrayNames() {
        #expect(MDArrayNames.aliases(detail: Self.applianceArray) == [
            "/dev/disk/by-id/md-uuid-8ef4498a:a730c2f6:602e9b89:34b30eef", "/dev/disk/by-id/md-name-(none):md0", "/dev/md/md0"])
        #expect(MDArrayNames.aliases(detail: Self.installerArray) == [
            "/dev/disk/by-id/md-uuid-5C3B2A10:0D9E8F7A:6B5C4D3E:2F1A0B9C", "/dev/disk/by-id/md-name-web01:0", "/dev/md/0", "/dev/md0"])
        #expect(MDArrayNames.aliases(detail: [:]).isEmpty)
        // Debian's mkconf output, a commented line and another array's line.
        let conf = """
            # definitions of existing MD arrays
            ARRAY /dev/md/boot  metadata=1.2 UUID=11111111:22222222:33333333:44444444 name=web01:boot
            #ARRAY /dev/md9 UUID=5c3b2a10:0d9e8f7a:6b5c4d3e:2f1a0b9c
            ARRAY /dev/md2 metadata=1.2 UUID=5c3b2a10:0d9e8f7a:6b5c4d3e:2f1a0b9c name=web01:0
            """
        let uuid = MDArrayNames.uuid(detail: Self.installerArray) ?? ""
        #expect(MDArrayNames.configuredNames(mdadmConf: conf, uuid: uuid) == ["/dev/md2"])

        var array = GuestBlockDevice(device: "/dev/md127", uuid: "0f0f0f0f-5555-4aaa-8bbb-000000000005", type: "ext4")
        array.aliases = MDArrayNames.aliases(detail: Self.installerArray) + MDArrayNames.configuredNames(mdadmConf: conf, uuid: uuid)
        let map = GuestDeviceMap(devices: Self.devices.devices + [array])
        for spec in ["/dev/md0", "/dev/md2", "/dev/md/0", "/dev/disk/by-id/md-name-web01:0",
                     "/dev/disk/by-id/md-uuid-5C3B2A10:0D9E8F7A:6B5C4D3E:2F1A0B9C", "UUID=0f0f0f0f-5555-4aaa-8bbb-000000000005"] {
            #expect(map.resolve(spec) == .device("/dev/md127"), "\(spec)")
        }
        #expect(map.resolve("/dev/md1").device == nil)
        #expect(map.resolve("/dev/disk/by-id/md-name-web01:1").device == nil)
    }

    @Test("names that survive virtio, and those that do not")
    func survivesVirtio() {
        for spec in ["UUID=x", "LABEL=root", "PARTUUID=y", "/dev/mapper/vg0-root", "/dev/vg0/root", "/dev/disk/by-uuid/x",
                     "/dev/disk/by-id/dm-name-vg0-data", "/dev/md0", "/dev/vda1"] {
            #expect(GuestDeviceMap.survivesVirtio(spec), "\(spec)")
        }
        for spec in ["/dev/sda1", "/dev/disk/by-path/pci-0000:00:10.0-scsi-0:0:0:0-part1", "/dev/disk/by-id/ata-VMware_Virtual_SATA-part1",
                     "/dev/xvda1", "/dev/nvme0n1p1"] {
            #expect(!GuestDeviceMap.survivesVirtio(spec), "\(spec)")
        }
    }

    @Test("the mount plan places a by-path /boot inspection could not, and says why a name stays unmounted")
    func mountPlan() {
        let fstab = """
            /dev/mapper/vg0-root / ext4 errors=remount-ro 0 1
            /dev/disk/by-path/pci-0000:00:10.0-scsi-0:0:0:0-part1 /boot ext2 defaults 0 2
            UUID=gone /srv ext4 defaults,nofail 0 2
            tmpfs /tmp tmpfs defaults 0 0
            /dev/vg0/swap none swap sw 0 0
            """
        let single = GuestDeviceMap(devices: Self.devices.devices.filter { $0.disk != 1 })
        let plan = GuestMounter.plan(fstabText: fstab, root: "/dev/vg0/root", inspected: ["/": "/dev/vg0/root"], devices: single)
        #expect(plan.mountpoints == ["/": "/dev/vg0/root", "/boot": "/dev/sda1"])
        #expect(plan.warnings.count == 1 && plan.warnings[0].hasPrefix("/srv (UUID=gone) not mounted"))
        #expect(plan.fstab.filter(\.neededToBoot).map(\.mountpoint) == ["/", "/boot", "none"])
    }

    @Test("btrfs subvolumes named by a by-id link mount as their subvolume, not as the default one")
    func subvolumeMountPlan() {
        let btrfs = GuestDeviceMap(devices: [
            GuestBlockDevice(device: "/dev/sda", disk: 0, partition: nil, type: "PTTYPE"),
            GuestBlockDevice(device: "/dev/sda2", disk: 0, partition: 2, uuid: "btrfs-uuid", type: "btrfs"),
        ])
        let fstab = """
            /dev/disk/by-id/scsi-36000c29d5c3b7f1e8a2b4c6d8e0f1a2b-part2  /            btrfs  defaults              0  0
            /dev/disk/by-id/scsi-36000c29d5c3b7f1e8a2b4c6d8e0f1a2b-part2  /var         btrfs  subvol=/@/var         0  0
            UUID=btrfs-uuid  /home  btrfs  noatime,subvol=@/home  0  0
            UUID=btrfs-uuid  /top   btrfs  subvol=/  0  0
            """
        let plan = GuestMounter.plan(fstabText: fstab, root: "/dev/sda2", inspected: [:], devices: btrfs)
        #expect(plan.mountpoints == ["/": "/dev/sda2", "/var": "btrfsvol:/dev/sda2/@/var", "/home": "btrfsvol:/dev/sda2/@/home", "/top": "/dev/sda2"])
    }

    // MARK: - Firmware

    @Test("UEFI from an ESP with EFI binaries; BIOS from MBR boot code or a BIOS boot partition; hybrids by the installed grub")
    func firmwareFromDisk() {
        var uefi = DiskBootFacts(partitionTable: "gpt", espPartitions: ["/dev/sda1"], efiBinaries: ["/dev/sda1": ["/EFI/debian/grubx64.efi"]])
        uefi.mountsESP = true
        let uefiDecision = FirmwareDecider.decide(uefi)
        #expect(uefiDecision.firmware == .uefi && uefiDecision.decidedBy == "disk")
        #expect(uefiDecision.reasons.contains { $0.contains("EFI System Partition /dev/sda1") })
        #expect(uefiDecision.reasons.contains { $0.contains("/EFI/debian/grubx64.efi") })

        let bios = DiskBootFacts(partitionTable: "msdos", mbrBootCode: true, grubPlatforms: ["i386-pc"])
        #expect(FirmwareDecider.decide(bios).firmware == .bios)
        #expect(FirmwareDecider.decide(bios).reasons.contains("boot code in the MBR"))

        // An ESP type with nothing bootable on it does not make a UEFI guest.
        let emptyESP = DiskBootFacts(partitionTable: "gpt", espPartitions: ["/dev/sda1"], biosBootPartitions: ["/dev/sda2"], mbrBootCode: true)
        #expect(FirmwareDecider.decide(emptyESP).firmware == .bios)

        var hybrid = uefi
        hybrid.biosBootPartitions = ["/dev/sda2"]
        hybrid.mbrBootCode = true
        hybrid.grubPlatforms = ["x86_64-efi"]
        #expect(FirmwareDecider.decide(hybrid).firmware == .uefi)
        hybrid.grubPlatforms = ["i386-pc"]
        hybrid.mountsESP = false
        #expect(FirmwareDecider.decide(hybrid).firmware == .bios)

        #expect(FirmwareDecider.decide(DiskBootFacts(partitionTable: "gpt")).firmware == .unknown)
    }

    @Test("vm_uefi, then the source description, then the disk; a disagreeing source wins with a warning")
    func firmwarePrecedence() {
        let disk = FirmwareDecision(firmware: .uefi, decidedBy: "disk", reasons: ["EFI System Partition /dev/sda1"])
        let bare = FirmwareChoice.choose(vmUEFI: nil, source: .unknown, disk: disk)
        #expect(bare.decision == disk && bare.warning == nil)
        let ovf = FirmwareChoice.choose(vmUEFI: nil, source: .bios, disk: disk)
        #expect(ovf.decision.firmware == .bios && ovf.decision.decidedBy == "source")
        #expect(ovf.warning?.contains("the source description says bios but the disk shows uefi") == true)
        #expect(FirmwareChoice.choose(vmUEFI: nil, source: .uefi, disk: disk).warning == nil)
        let forced = FirmwareChoice.choose(vmUEFI: false, source: .uefi, disk: disk)
        #expect(forced.decision.firmware == .bios && forced.decision.decidedBy == "vm_uefi" && forced.warning != nil)
        let nothing = FirmwareChoice.choose(vmUEFI: nil, source: .unknown, disk: nil)
        #expect(nothing.decision.firmware == .bios && nothing.decision.decidedBy == "default")
    }

    @Test("a report with reasons is 'converted, boot not ensured'; one without, and an earlier version's, is not")
    func bootResult() throws {
        let inspection = GuestInspection.encrypted(rootDevice: "/dev/sda2")
        #expect(GuestFixReport(inspection: inspection).bootResult == nil)
        let doubtful = GuestFixReport(inspection: inspection, bootNotEnsured: ["the root filesystem is encrypted (LUKS…): a key is needed"])
        #expect(doubtful.bootResult?.hasPrefix("converted, boot not ensured: the root filesystem is encrypted") == true)
        // A fix.json written before these fields existed still decodes.
        var old = try JSONSerialization.jsonObject(with: JSONEncoder().encode(GuestFixReport(inspection: inspection))) as? [String: Any] ?? [:]
        old["bootNotEnsured"] = nil
        old["firmware"] = nil
        let decoded = try JSONDecoder().decode(GuestFixReport.self, from: JSONSerialization.data(withJSONObject: old))
        #expect(decoded.bootResult == nil)
        let check = BootChainCheck(problems: ["x"])
        let json = String(decoding: try JSONEncoder().encode(check), as: UTF8.self)
        #expect(json.contains("\"ensured\":false"))
        #expect(try JSONDecoder().decode(BootChainCheck.self, from: Data(json.utf8)) == check)
    }
}
