import TestSupport
import Foundation
import Synchronization
import Testing
@testable import GuestFix
@testable import Stages

/// Phony guests (guestfish-made, no libc) with the boot layouts users hit and no test had:
/// each a raw image with real filesystems, built together in one guestfish session (one
/// appliance) and cached beside the other test guests under a versioned directory.
///
/// - `lvm-bypath`: MBR with boot code; sda1 ext2 /boot named in fstab by a VMware by-path
///   link, sda2 the PV of vg0 (vg0/root ext4 /); grub.cfg on /boot searches /boot by UUID and
///   loads `/vmlinuz-<v>` and `/initrd.img-<v>` (relative to /boot); initramfs-tools.
/// - `uefi-sdx`: GPT; sda1 ESP (vfat, EFI/debian/grubx64.efi), sda2 ext4 /; fstab and grub
///   name /dev/sdaN; /boot/grub/x86_64-efi; initramfs-tools. No OVF says UEFI.
/// - `dracut-xfs`: MBR with boot code; sda1 ext4 /boot, sda2 XFS /; grub loads
///   `/initrd.img-<v>` (Debian's name) while dracut is the installed generator.
/// - `missing-initrd`: ext4 /; grub.cfg's only entry loads a kernel whose initramfs is gone.
/// - `luks-root`: sda1 ext2 /boot, sda2 a LUKS volume (the encrypted root; the key is not given).
/// - `md-root`: sda1 and sda2 an md RAID1 holding ext4 /: fstab names it `/dev/md/md0`, the
///   link udev makes from the array's name, which the appliance has no device for; grub by UUID.
///
/// Every initramfs is a real gzip cpio; the originals hold VMware's drivers, no virtio.
enum BootChainTestGuests {
    static let version = "6.1.0-18-amd64"
    static let names = ["lvm-bypath", "uefi-sdx", "dracut-xfs", "missing-initrd", "luks-root", "md-root"]
    static let bootUUID = "0b0b0b0b-1111-4aaa-8bbb-000000000001"
    static let xfsRootUUID = "0c0c0c0c-2222-4aaa-8bbb-000000000002"
    static let xfsBootUUID = "0c0c0c0c-3333-4aaa-8bbb-000000000003"
    static let plainRootUUID = "0d0d0d0d-4444-4aaa-8bbb-000000000004"
    static let mdRootUUID = "0f0f0f0f-5555-4aaa-8bbb-000000000005"

    static var directory: URL { GuestFixTestGuests.cacheDirectory.appendingPathComponent("bootchain-v2") }

    static func image(_ name: String) async throws -> URL {
        try await ensureBuilt()
        return directory.appendingPathComponent("\(name).img")
    }

    /// The gzip cpio the fake generator writes: the virtio drivers modules.dep names.
    static func virtioInitramfs() async throws -> URL {
        try await ensureBuilt()
        return directory.appendingPathComponent("virtio-initrd.img")
    }

    static let virtioModules = ["block/virtio_blk", "scsi/virtio_scsi", "net/virtio_net", "virtio/virtio_pci",
                                "virtio/virtio", "virtio/virtio_ring", "virtio/virtio_pci_modern_dev"]

    static let vmwareModules = ["scsi/vmw_pvscsi", "message/fusion/mptspi"]

    /// A gzip cpio at `directory/name` holding phony `.ko` files for `modules` (paths under
    /// kernel/drivers), as an initramfs generator would lay them out.
    @discardableResult
    static func makeInitramfs(_ name: String, modules: [String], in directory: URL) async throws -> URL {
        let tree = directory.appendingPathComponent("tree-\(name)")
        for module in modules {
            let file = tree.appendingPathComponent("usr/lib/modules/\(version)/kernel/drivers/\(module).ko")
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data("phony module".utf8).write(to: file)
        }
        try Data("#!/bin/sh\n".utf8).write(to: tree.appendingPathComponent("init"))
        try await sh(["sh", "-c", "find . | cpio --quiet -o -H newc | gzip -9 > '\(directory.path)/\(name)'"], in: tree)
        return directory.appendingPathComponent(name)
    }

    static var modulesDep: String {
        let base = "kernel/drivers/virtio/virtio.ko: \nkernel/drivers/virtio/virtio_ring.ko: \nkernel/drivers/virtio/virtio_pci_modern_dev.ko: \n"
        let core = "kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko"
        return base
            + "kernel/drivers/block/virtio_blk.ko: \(core)\n"
            + "kernel/drivers/scsi/virtio_scsi.ko: \(core)\n"
            + "kernel/drivers/net/virtio_net.ko: \(core)\n"
            + "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko \(core)\n"
            + "kernel/drivers/scsi/vmw_pvscsi.ko: \n"
    }

    private static func ensureBuilt() async throws {
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent("done").path) { return }
        GuestFixTestGuests.configureLibguestfsForTests()
        let scratch = try Scratch("bootchain-guests")
        let work = scratch.url
        // Two initramfs images, made with the host's cpio and gzip.
        for (name, modules) in [("vmware-initrd.img", vmwareModules), ("virtio-initrd.img", virtioModules)] {
            try await makeInitramfs(name, modules: modules, in: work)
        }
        let files: [String: String] = [
            "os-release": "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
            "modules.dep": modulesDep,
            "fstab-a": "/dev/mapper/vg0-root\t/\text4\terrors=remount-ro\t0\t1\n/dev/disk/by-path/pci-0000:00:10.0-scsi-0:0:0:0-part1\t/boot\text2\tdefaults\t0\t2\n",
            "grub-a": grubConfig(search: bootUUID, kernel: "/vmlinuz-\(version)", initrd: "/initrd.img-\(version)", root: "/dev/mapper/vg0-root"),
            "fstab-b": "/dev/sda2\t/\text4\terrors=remount-ro\t0\t1\n/dev/sda1\t/boot/efi\tvfat\tumask=0077\t0\t1\n",
            "grub-b": grubConfig(search: nil, kernel: "/boot/vmlinuz-\(version)", initrd: "/boot/initrd.img-\(version)", root: "/dev/sda2"),
            "efi-stub": "search.fs_uuid \(plainRootUUID) root hd0,gpt2\nset prefix=($root)'/boot/grub'\nconfigfile $prefix/grub.cfg\n",
            "fstab-c": "UUID=\(xfsRootUUID)\t/\txfs\tdefaults\t0\t0\nUUID=\(xfsBootUUID)\t/boot\text4\tdefaults\t1\t2\n",
            "grub-c": grubConfig(search: xfsBootUUID, kernel: "/vmlinuz-\(version)", initrd: "/initrd.img-\(version)", root: "UUID=\(xfsRootUUID)"),
            "fstab-d": "UUID=\(plainRootUUID)\t/\text4\terrors=remount-ro\t0\t1\n",
            "grub-d": grubConfig(search: nil, kernel: "/boot/vmlinuz-6.1.0-17-amd64", initrd: "/boot/initrd.img-6.1.0-17-amd64",
                                 root: "UUID=\(plainRootUUID)"),
                        "fstab-f": "/dev/md/md0\t/\text4\tdefaults\t0\t1\n",
            "grub-f": grubConfig(search: nil, kernel: "/boot/vmlinuz-\(version)", initrd: "/boot/initrd.img-\(version)", root: "UUID=\(mdRootUUID)"),
        ]
        // A LUKS1 header as cryptsetup writes it (magic, version 1, cipher, UUID at 168):
        // what blkid and libguestfs see of an encrypted root whose key we do not have.
        // (guestfish reads luks-format's key from a terminal only.)
        var header = Data(count: 4096)
        header.replaceSubrange(0..<8, with: [0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE, 0x00, 0x01])
        header.replaceSubrange(8..<11, with: Array("aes".utf8))
        header.replaceSubrange(40..<43, with: Array("xts".utf8))
        header.replaceSubrange(72..<78, with: Array("sha256".utf8))
        header.replaceSubrange(168..<204, with: Array("6f1e3a52-9c7d-4b1e-8f2a-3d4c5b6a7e8f".utf8))
        try header.write(to: work.appendingPathComponent("luks-header"))
        for (name, content) in files { try content.write(to: work.appendingPathComponent(name), atomically: true, encoding: .utf8) }

        func root(_ host: String, fstab: String, generator: String) -> String {
            """
            mkdir-p /etc/default
            mkdir-p /etc/initramfs-tools
            mkdir-p /bin
            mkdir-p /usr/sbin
            mkdir-p /usr/bin
            mkdir-p /var/lib/dpkg
            mkdir-p /lib/modules/\(version)/kernel/drivers/block
            mkdir-p /boot
            upload \(work.path)/os-release /etc/os-release
            write /etc/debian_version "12.5\\n"
            write /etc/hostname "\(host)\\n"
            write /var/lib/dpkg/status ""
            upload \(work.path)/\(fstab) /etc/fstab
            upload \(work.path)/modules.dep /lib/modules/\(version)/modules.dep
            write /lib/modules/\(version)/modules.builtin "kernel/drivers/ata/libata.ko\\n"
            write /etc/initramfs-tools/modules "# List of modules\\n"
            upload /bin/ls /bin/ls
            chmod 0755 /bin/ls
            write \(generator) "#!/bin/sh\\n"
            chmod 0755 \(generator)

            """
        }
        func boot(_ directory: String, grub: String, platform: String, initrd: String = "initrd.img-\(version)") -> String {
            """
            mkdir-p \(directory)/grub/\(platform)
            upload \(work.path)/\(grub) \(directory)/grub/grub.cfg
            write \(directory)/vmlinuz-\(version) "phony kernel"
            upload \(work.path)/vmware-initrd.img \(directory)/\(initrd)

            """
        }
        // Any non-zero bytes in the first 440 are boot code to the firmware decision.
        let mbrCode = "pwrite-device /dev/DISK \"phony boot code\" 0\n"
        var script = "launch\n"
        // lvm-bypath (sda)
        script += "part-init /dev/sda mbr\npart-add /dev/sda p 2048 133119\npart-add /dev/sda p 133120 -2048\n"
        script += "part-set-mbr-id /dev/sda 2 0x8e\n" + mbrCode.replacingOccurrences(of: "DISK", with: "sda")
        script += "mkfs ext2 /dev/sda1\nset-uuid /dev/sda1 \(bootUUID)\npvcreate /dev/sda2\nvgcreate vg0 /dev/sda2\nlvcreate root vg0 300\n"
        script += "mkfs ext4 /dev/vg0/root\nmount /dev/vg0/root /\n" + root("lvm-bypath", fstab: "fstab-a", generator: "/usr/sbin/update-initramfs")
        script += "mount /dev/sda1 /boot\n" + boot("/boot", grub: "grub-a", platform: "i386-pc") + "umount-all\n"
        // uefi-sdx (sdb)
        script += "part-init /dev/sdb gpt\npart-add /dev/sdb p 2048 133119\npart-add /dev/sdb p 133120 -2048\n"
        script += "part-set-gpt-type /dev/sdb 1 \(GuestBootFacts.espGUID)\nmkfs vfat /dev/sdb1\nmkfs ext4 /dev/sdb2\nset-uuid /dev/sdb2 \(plainRootUUID)\n"
        script += "mount /dev/sdb2 /\n" + root("uefi-sdx", fstab: "fstab-b", generator: "/usr/sbin/update-initramfs")
        script += boot("/boot", grub: "grub-b", platform: "x86_64-efi")
        script += "mkdir-p /boot/efi\nmount /dev/sdb1 /boot/efi\nmkdir-p /boot/efi/EFI/debian\nwrite /boot/efi/EFI/debian/grubx64.efi \"MZ phony\"\n"
        script += "upload \(work.path)/efi-stub /boot/efi/EFI/debian/grub.cfg\numount-all\n"
        // dracut-xfs (sdc)
        script += "part-init /dev/sdc mbr\npart-add /dev/sdc p 2048 133119\npart-add /dev/sdc p 133120 -2048\n" + mbrCode.replacingOccurrences(of: "DISK", with: "sdc")
        script += "mkfs ext4 /dev/sdc1\nset-uuid /dev/sdc1 \(xfsBootUUID)\nmkfs xfs /dev/sdc2\nset-uuid /dev/sdc2 \(xfsRootUUID)\n"
        script += "mount /dev/sdc2 /\n" + root("dracut-xfs", fstab: "fstab-c", generator: "/usr/bin/dracut") + "mkdir-p /etc/dracut.conf.d\n"
        script += "mount /dev/sdc1 /boot\n" + boot("/boot", grub: "grub-c", platform: "i386-pc") + "umount-all\n"
        // missing-initrd (sdd)
        script += "part-init /dev/sdd mbr\npart-add /dev/sdd p 2048 -2048\n" + mbrCode.replacingOccurrences(of: "DISK", with: "sdd")
        script += "mkfs ext4 /dev/sdd1\nset-uuid /dev/sdd1 \(plainRootUUID)\nmount /dev/sdd1 /\n"
        script += root("missing-initrd", fstab: "fstab-d", generator: "/usr/sbin/update-initramfs")
        script += boot("/boot", grub: "grub-d", platform: "i386-pc") + "write /boot/vmlinuz-6.1.0-17-amd64 \"phony kernel\"\numount-all\n"
        // md-root (sdf)
        script += "part-init /dev/sdf mbr\npart-add /dev/sdf p 2048 411647\npart-add /dev/sdf p 411648 -2048\n" + mbrCode.replacingOccurrences(of: "DISK", with: "sdf")
        script += "md-create md0 \"/dev/sdf1 /dev/sdf2\" level:raid1\nmkfs ext4 /dev/md/md0\nset-uuid /dev/md/md0 \(mdRootUUID)\n"
        script += "mount /dev/md/md0 /\n" + root("md-root", fstab: "fstab-f", generator: "/usr/sbin/update-initramfs")
        script += boot("/boot", grub: "grub-f", platform: "i386-pc") + "umount-all\nmd-stop /dev/md/md0\n"
        // luks-root (sde)
        script += "part-init /dev/sde mbr\npart-add /dev/sde p 2048 133119\npart-add /dev/sde p 133120 -2048\n" + mbrCode.replacingOccurrences(of: "DISK", with: "sde")
        // The root's content does not matter: without the key the fix cannot open it.
        script += "mkfs ext2 /dev/sde1\nmount /dev/sde1 /\n"
        script += boot("", grub: "grub-a", platform: "i386-pc") + "umount-all\nupload \(work.path)/luks-header /dev/sde2\n"
        try await buildCached(names, size: "512M", script: script, in: work, alsoKeeping: ["virtio-initrd.img"], as: directory)
    }

    /// Runs `script` in one guestfish session over a raw image of `size` for each of `names`
    /// (`<name>.img` in `work`), then publishes the images, the `alsoKeeping` files of `work`
    /// and a `done` marker as `directory` in one rename, so a reader sees all or nothing.
    static func buildCached(_ names: [String], size: String, script: String, in work: URL,
                            alsoKeeping extras: [String] = [], as directory: URL) async throws {
        try script.write(to: work.appendingPathComponent("build.gf"), atomically: true, encoding: .utf8)
        var adds = ""
        for name in names {
            let path = work.appendingPathComponent("\(name).img").path
            try await sh(["truncate", "-s", size, path])
            adds += " -a '\(path)'"
        }
        try await sh(["sh", "-c", "guestfish --format=raw \(adds) -f '\(work.path)/build.gf'"],
                     environment: RealGuestTesting.libguestfsEnvironment)
        let staging = directory.deletingLastPathComponent().appendingPathComponent(".\(directory.lastPathComponent)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
        for name in names { try FileManager.default.moveItem(at: work.appendingPathComponent("\(name).img"), to: staging.appendingPathComponent("\(name).img")) }
        for extra in extras { try FileManager.default.copyItem(at: work.appendingPathComponent(extra), to: staging.appendingPathComponent(extra)) }
        try Data().write(to: staging.appendingPathComponent("done"))
        try? FileManager.default.removeItem(at: directory)
        try FileManager.default.moveItem(at: staging, to: directory)
    }

    static func grubConfig(search: String?, kernel: String, initrd: String, root: String) -> String {
        var text = "set default=\"0\"\n"
        if let search { text += "search --no-floppy --fs-uuid --set=root \(search)\n" }
        text += "menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class os {\n\tinsmod ext2\n"
        if let search { text += "\tsearch --no-floppy --fs-uuid --set=root \(search)\n" }
        text += "\tlinux\t\(kernel) root=\(root) ro quiet\n\tinitrd\t\(initrd)\n}\n"
        return text
    }
}

/// A generator that records what the fixer asked the guest to run and writes, where that
/// command would, an initramfs holding the virtio drivers (a phony guest cannot run a real one).
final class FakeInitramfsGenerator: Sendable {
    let image: URL
    private let calls = Mutex<[[String]]>([])
    var invocations: [[String]] { calls.withLock { $0 } }

    init(image: URL) { self.image = image }

    /// The output path each generator form names.
    static func output(of command: [String]) -> String? {
        switch command.first {
        case "update-initramfs": command.last.map { "/boot/initrd.img-\($0)" }
        case "dracut", "mkinitramfs": command.count >= 4 ? command[command.count - 2] : nil
        case "mkinitcpio": command.last
        default: nil
        }
    }

    var run: @Sendable (GuestfsHandle, [String]) throws -> Void {
        { [self] guest, command in
            calls.withLock { $0.append(command) }
            guard let output = Self.output(of: command) else { throw StageError(.toolFailed, "fake generator: unknown command \(command)") }
            try guest.upload(image.path, to: output)
        }
    }
}

/// One phony guest fixed on a qcow2 overlay with the fake generator, as the fix stage does it.
struct BootChainFixRun {
    let scratch: Scratch
    let overlay: URL
    let report: GuestFixReport
    let generator: FakeInitramfsGenerator

    static func fix(_ name: String, regenInitramfs: Bool = true) async throws -> BootChainFixRun {
        try await fix(source: try await BootChainTestGuests.image(name), name: name, regenInitramfs: regenInitramfs)
    }

    static func fix(source: URL, name: String, regenInitramfs: Bool = true) async throws -> BootChainFixRun {
        GuestFixTestGuests.configureLibguestfsForTests()
        let generator = FakeInitramfsGenerator(image: try await BootChainTestGuests.virtioInitramfs())
        let scratch = try Scratch()
        let overlay = scratch.file("overlay.qcow2")
        let sourceDigest = try FileDigest.sha256(of: source)
        try await GuestFixOverlay.create(over: source, sourceFormat: "raw", at: overlay)
        var options = ConversionOptions()
        options.regenInitramfs = regenInitramfs
        var fixer = LinuxGuestFixer(applianceCPUs: 1)
        fixer.runGenerator = generator.run
        let started = ContinuousClock.now
        let report = try await fixer.fix(disks: [(overlay, "qcow2")], options: options, identifier: "test-bootchain-\(name)")
        print("\(name) fix: \(ContinuousClock.now - started); steps: \(report.durations.map { "\($0.step)=\(String(format: "%.1f", $0.seconds))s" })")
        print("  generator: \(generator.invocations)")
        print("  firmware: \(String(describing: report.firmware))")
        for change in report.changes { print("  change [\(change.area)] \(change.file): \(change.before.prefix(100)) -> \(change.after.prefix(100))") }
        for warning in report.warnings { print("  warning: \(warning)") }
        for passed in report.bootCheck?.passed ?? [] { print("  boot check ok: \(passed)") }
        #expect(try FileDigest.sha256(of: source) == sourceDigest, "the source must never be written")
        return BootChainFixRun(scratch: scratch, overlay: overlay, report: report, generator: generator)
    }
}
