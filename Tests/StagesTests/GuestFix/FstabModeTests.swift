import Foundation
import Testing
@testable import GuestFix
@testable import Stages

/// The four `fstab_mode`s on one fstab that holds every kind of name a migrated guest
/// carries: bus-bound kernel names of each hypervisor, controller-bound by-path/by-id links,
/// and the names that are stable already (UUID=, LABEL=, LVM, md, dm by-id links).
@Suite("fstab_mode on the same fstab")
struct FstabModeTests {
    static let fstab = """
        # <file system> <mount point> <type> <options> <dump> <pass>
        /dev/sda1                 /            ext4  errors=remount-ro  0 1
        /dev/hdb1                 /legacy      ext3  defaults           0 2
        /dev/xvdc1                /xen         ext4  defaults           0 2
        /dev/vdd1                 /kvm         xfs   defaults           0 2
        /dev/nvme0n1p5            /fast        ext4  defaults           0 2
        /dev/cciss/c0d0p6         /smartarray  ext4  defaults           0 2
        /dev/disk/by-path/pci-0000:00:10.0-scsi-0:0:1:0-part1  /bypath  ext4  nofail  0 2
        /dev/disk/by-id/scsi-36000c2930c4e1b2d-part2           /byid    ext4  nofail  0 2
        /dev/disk/by-id/dm-name-vg0-home                       /home    ext4  defaults 0 2
        /dev/disk/by-id/md-uuid-5c1d0a4e:11aa22bb:33cc44dd:55ee66ff /raid ext4 defaults 0 2
        /dev/disk/by-uuid/0a1b2c3d  /byuuid  ext4  defaults  0 2
        UUID=6f0e2d4c-1111-2222-3333-444455556666  /boot  ext4  defaults  0 2
        LABEL=data                /data        ext4  defaults           0 2
        PARTUUID=c0ffee-07        /efi         vfat  umask=0077         0 1
        /dev/mapper/vg0-var       /var         ext4  defaults           0 2
        /dev/vg0/srv              /srv         ext4  defaults           0 2
        /dev/md0                  /md          ext4  defaults           0 2
        /dev/md/backup            /backup      ext4  defaults           0 2
        /swapfile                 none         swap  sw                 0 0
        server:/export            /nfs         nfs   defaults,_netdev   0 0
        tmpfs                     /tmp         tmpfs defaults           0 0
        /srv/bind                 /mnt/bind    none  bind               0 0
        """

    /// Every bus-bound name resolves, so the modes differ only in what they choose to touch.
    static func resolve(_ reference: DeviceReference) -> String? {
        switch reference.kind {
        case let .kernelName(disk, partition): "UUID=k\(disk)-\(partition ?? 0)"
        case let .byPath(partition): "UUID=p\(partition ?? 0)"
        case let .byID(partition): "UUID=i\(partition ?? 0)"
        case .stable, .other: nil
        }
    }

    /// The device column of each rewritten line, in order.
    static func rewritten(_ mode: ConversionOptions.FstabMode) -> [String] {
        FstabRewriter(table: .fstab, mode: mode).rewrite(fstab, resolve: resolve).edits.map {
            String($0.before.split(separator: " ").first ?? "")
        }
    }

    static let stableNames = ["/dev/disk/by-id/dm-name-vg0-home", "/dev/disk/by-id/md-uuid-5c1d0a4e:11aa22bb:33cc44dd:55ee66ff",
                              "/dev/disk/by-uuid/0a1b2c3d", "UUID=6f0e2d4c-1111-2222-3333-444455556666", "LABEL=data",
                              "PARTUUID=c0ffee-07", "/dev/mapper/vg0-var", "/dev/vg0/srv", "/dev/md0", "/dev/md/backup"]

    @Test("stabilize-all: every bus-bound name, /dev/vdX included")
    func stabilizeAll() {
        #expect(Self.rewritten(.stabilizeAll) == [
            "/dev/sda1", "/dev/hdb1", "/dev/xvdc1", "/dev/vdd1", "/dev/nvme0n1p5", "/dev/cciss/c0d0p6",
            "/dev/disk/by-path/pci-0000:00:10.0-scsi-0:0:1:0-part1", "/dev/disk/by-id/scsi-36000c2930c4e1b2d-part2",
        ])
    }

    @Test("minimal: only the names virtio cannot resolve; /dev/vdX, UUID=, LABEL=, LVM and md stay")
    func minimal() {
        let result = FstabRewriter(table: .fstab, mode: .minimal).rewrite(Self.fstab, resolve: Self.resolve)
        #expect(Self.rewritten(.minimal) == [
            "/dev/sda1", "/dev/hdb1", "/dev/xvdc1", "/dev/nvme0n1p5", "/dev/cciss/c0d0p6",
            "/dev/disk/by-path/pci-0000:00:10.0-scsi-0:0:1:0-part1", "/dev/disk/by-id/scsi-36000c2930c4e1b2d-part2",
        ])
        #expect(result.text.contains("/dev/vdd1                 /kvm         xfs"))
        #expect(result.text.contains("UUID=k0-1                 /            ext4  errors=remount-ro  0 1"),
                "only the device column changes; the spacing after it stays")
        for name in Self.stableNames {
            #expect(result.text.contains(name + " "), "\(name) must stay")
        }
        #expect(result.unresolved.isEmpty)
    }

    @Test("bypath-only: only by-path and controller-bound by-id links")
    func bypathOnly() {
        #expect(Self.rewritten(.bypathOnly) == [
            "/dev/disk/by-path/pci-0000:00:10.0-scsi-0:0:1:0-part1", "/dev/disk/by-id/scsi-36000c2930c4e1b2d-part2",
        ])
    }

    @Test("noop: nothing")
    func noop() {
        let result = FstabRewriter(table: .fstab, mode: .noop).rewrite(Self.fstab, resolve: Self.resolve)
        #expect(result.text == Self.fstab && !result.changed)
    }

    @Test("the modes nest: noop ⊂ bypath-only ⊂ minimal ⊂ stabilize-all, and no mode touches a stable name")
    func modesNest() {
        let sets = ConversionOptions.FstabMode.allCases.map { ($0, Set(Self.rewritten($0))) }
        let byMode = Dictionary(uniqueKeysWithValues: sets)
        #expect(byMode[.noop, default: []].isSubset(of: byMode[.bypathOnly, default: []]))
        #expect(byMode[.bypathOnly, default: []].isSubset(of: byMode[.minimal, default: []]))
        #expect(byMode[.minimal, default: []].isSubset(of: byMode[.stabilizeAll, default: []]))
        for (mode, names) in sets {
            #expect(names.isDisjoint(with: Self.stableNames), "\(mode.rawValue) touched a stable name")
        }
    }

    @Test("minimal rewrites crypttab's device column the same way")
    func crypttab() {
        let crypttab = "sda3_crypt /dev/sda3 none luks,discard\nvdb1_crypt /dev/vdb1 none luks\nlv_crypt /dev/mapper/vg0-lv none luks\n"
        let result = FstabRewriter(table: .crypttab, mode: .minimal).rewrite(crypttab, resolve: Self.resolve)
        #expect(result.text == "sda3_crypt UUID=k0-3 none luks,discard\nvdb1_crypt /dev/vdb1 none luks\nlv_crypt /dev/mapper/vg0-lv none luks\n")
    }
}
