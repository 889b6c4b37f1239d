/// One block device of the source's disks as the appliance sees it, with every name the
/// guest could have used for it.
struct GuestBlockDevice: Equatable, Sendable {
    /// The appliance's name: /dev/sda1, /dev/vg0/root, /dev/md127.
    var device: String
    /// For partitions and whole disks: the disk's index in the guest's disk order, and the
    /// partition number (nil for a whole disk or a logical volume).
    var disk: Int?
    var partition: Int?
    var uuid: String = ""
    var partUUID: String = ""
    var label: String = ""
    var partLabel: String = ""
    /// Filesystem type (ext4, xfs, vfat, swap, crypto_LUKS, linux_raid_member, LVM2_member…).
    var type: String = ""
    /// `vg/lv` for a logical volume.
    var logicalVolume: String?
    /// Other device-mapper or md names (`/dev/md/root`, `/dev/md0`, udev's md-uuid and
    /// md-name links): an array's names in the guest (``MDArrayNames``).
    var aliases: [String] = []
    /// A logical volume's device-mapper UUID, as udev's `/dev/disk/by-id/dm-uuid-…` link
    /// names it (Ubuntu's installer writes the root so in fstab).
    var deviceMapperUUID: String?
}

/// Resolves an fstab (or kernel command line) device name against the source's own disks,
/// for every naming scheme a guest uses: UUID=, PARTUUID=, LABEL=, PARTLABEL= and their
/// /dev/disk/by-* links, /dev/mapper and /dev/<vg>/<lv>, kernel names in disk order
/// (/dev/sdb2), and controller-bound by-path/by-id links, which cannot be decoded and are
/// placed by their `-partN` suffix when only one disk partition fits. Libguestfs inspection
/// resolves the stable names itself but not by-path/by-id links: a /boot named so stayed
/// unmounted, and the initramfs was rebuilt into the root filesystem's empty /boot directory.
struct GuestDeviceMap: Equatable, Sendable {
    var devices: [GuestBlockDevice]

    enum Resolution: Equatable, Sendable {
        case device(String)
        case unresolved(String)

        var device: String? { if case .device(let name) = self { name } else { nil } }
    }

    func resolve(_ spec: String) -> Resolution {
        let upper = spec.uppercased()
        func unique(_ matches: [GuestBlockDevice], _ what: String) -> Resolution {
            let names = Set(matches.map(\.device))
            if names.count == 1, let name = names.first { return .device(name) }
            return names.isEmpty ? .unresolved("no device of the source's disks has \(what)")
                : .unresolved("several devices have \(what): \(names.sorted().joined(separator: ", "))")
        }
        for (prefix, link, key) in [("UUID=", "/dev/disk/by-uuid/", \GuestBlockDevice.uuid),
                                    ("PARTUUID=", "/dev/disk/by-partuuid/", \GuestBlockDevice.partUUID),
                                    ("LABEL=", "/dev/disk/by-label/", \GuestBlockDevice.label),
                                    ("PARTLABEL=", "/dev/disk/by-partlabel/", \GuestBlockDevice.partLabel)] {
            var value: String?
            if upper.hasPrefix(prefix) { value = Self.unquoted(String(spec.dropFirst(prefix.count))) }
            if spec.hasPrefix(link) { value = Self.udevUnescaped(String(spec.dropFirst(link.count))) }
            guard let value, !value.isEmpty else { continue }
            // UUIDs compare case-insensitively (blkid prints lower case, some fstabs upper).
            let caseless = key == \GuestBlockDevice.uuid || key == \GuestBlockDevice.partUUID
            return unique(devices.filter { caseless ? $0[keyPath: key].lowercased() == value.lowercased() : $0[keyPath: key] == value },
                          "\(prefix)\(value)")
        }
        if spec.hasPrefix("/dev/mapper/") || spec.hasPrefix("/dev/disk/by-id/dm-name-") {
            let name = spec.hasPrefix("/dev/mapper/") ? String(spec.dropFirst("/dev/mapper/".count))
                : String(spec.dropFirst("/dev/disk/by-id/dm-name-".count))
            return unique(devices.filter { device in
                device.logicalVolume.map { Self.mapperName(ofLogicalVolume: $0) == name } ?? false
                    || device.aliases.contains("/dev/mapper/" + name)
            }, "the device-mapper name \(name)")
        }
        if spec.hasPrefix(Self.deviceMapperUUIDLink) {
            let value = String(spec.dropFirst(Self.deviceMapperUUIDLink.count))
            return unique(devices.filter { $0.deviceMapperUUID == value }, "the device-mapper UUID \(value)")
        }
        if spec.hasPrefix("/dev/md") || spec.hasPrefix("/dev/disk/by-id/md-") {
            return unique(devices.filter { $0.device == spec || $0.aliases.contains(spec) }, "the md name \(spec)")
        }
        if case let .kernelName(disk, partition) = BlockDeviceSpec(spec) {
            return unique(devices.filter { $0.disk == disk && $0.partition == partition && $0.logicalVolume == nil },
                          "disk \(disk + 1)'s \(partition.map { "partition \($0)" } ?? "whole disk") (\(spec) in disk order)")
        }
        switch BlockDeviceSpec(spec) {
        case let .byPath(partition), let .byID(partition):
            let disks = Set(devices.compactMap(\.disk))
            let candidates = devices.filter { $0.disk != nil && $0.partition == partition && $0.logicalVolume == nil }
            if disks.count > 1 && candidates.count > 1 {
                return .unresolved("\(spec) names a controller slot or serial of the old hypervisor, and "
                    + "\(candidates.count) disks have a \(partition.map { "partition \($0)" } ?? "whole disk")")
            }
            return unique(candidates, "a \(partition.map { "partition \($0)" } ?? "whole disk") for \(spec)")
        default:
            break
        }
        // /dev/<vg>/<lv>
        let parts = spec.split(separator: "/")
        if spec.hasPrefix("/dev/"), parts.count == 3 {
            let name = "\(parts[1])/\(parts[2])"
            let matches = devices.filter { $0.logicalVolume == name }
            if !matches.isEmpty { return unique(matches, "the logical volume \(name)") }
        }
        return .unresolved("\(spec) is not a device name this guest's disks resolve")
    }

    static let deviceMapperUUIDLink = "/dev/disk/by-id/dm-uuid-"

    /// LVM's device-mapper UUID of a logical volume: `LVM-` and the group's and the
    /// volume's UUIDs without their dashes (lvm2's `_build_dm_uuid`, what udev links).
    static func lvmDeviceMapperUUID(group: String, volume: String) -> String {
        "LVM-" + group.replacingOccurrences(of: "-", with: "") + volume.replacingOccurrences(of: "-", with: "")
    }

    /// `vg0/root` → `vg0-root`; a dash inside either name is doubled (`my-vg/lv` → `my--vg-lv`).
    static func mapperName(ofLogicalVolume name: String) -> String {
        let parts = name.split(separator: "/", maxSplits: 1).map { $0.replacingOccurrences(of: "-", with: "--") }
        return parts.joined(separator: "-")
    }

    /// udev escapes blanks and slashes in by-label links as `\x20`, `\x2f`.
    static func udevUnescaped(_ text: String) -> String {
        var result = ""
        var index = text.startIndex
        while index < text.endIndex {
            if text[index...].hasPrefix("\\x"), let end = text.index(index, offsetBy: 4, limitedBy: text.endIndex),
               let value = UInt8(text[text.index(index, offsetBy: 2)..<end], radix: 16) {
                result.append(Character(Unicode.Scalar(value)))
                index = end
            } else {
                result.append(text[index])
                index = text.index(after: index)
            }
        }
        return result
    }

    static func unquoted(_ text: String) -> String {
        guard text.count >= 2, let first = text.first, first == text.last, first == "\"" || first == "'" else { return text }
        return String(text.dropFirst().dropLast())
    }

    /// Whether a name still finds its device once the disks are virtio (/dev/vdX, new
    /// controller): filesystem and partition identities, LVM, device-mapper and md names.
    /// Kernel names of another bus and by-path/by-id links do not.
    static func survivesVirtio(_ spec: String) -> Bool {
        let upper = spec.uppercased()
        if ["UUID=", "PARTUUID=", "LABEL=", "PARTLABEL="].contains(where: { upper.hasPrefix($0) }) { return true }
        if spec.hasPrefix("/dev/vd") { return true }
        switch BlockDeviceSpec(spec) {
        case .stable: return true
        case .kernelName, .byPath, .byID: return false
        case .other: return spec.hasPrefix("/dev/md") || spec.split(separator: "/").count == 3
        }
    }
}

/// One line of /etc/fstab, the fields the boot check and the mounting need.
struct FstabEntry: Equatable, Sendable {
    var spec: String
    var mountpoint: String
    var type: String
    var options: [String]

    /// Entries systemd and mount -a would wait for at boot: not `noauto`/`nofail`, and a
    /// real block device (swap counts: a missing swap device holds the boot too).
    var neededToBoot: Bool {
        !options.contains("noauto") && !options.contains("nofail") && isBlockDevice
    }

    /// Whether the entry names a block device (not proc, tmpfs, nfs, bind mounts…).
    var isBlockDevice: Bool {
        let upper = spec.uppercased()
        if ["UUID=", "PARTUUID=", "LABEL=", "PARTLABEL="].contains(where: { upper.hasPrefix($0) }) { return true }
        guard spec.hasPrefix("/dev/") else { return false }
        return !options.contains("bind") && !["tmpfs", "proc", "sysfs", "devpts", "nfs", "nfs4", "cifs"].contains(type)
    }

    var isMountable: Bool { mountpoint.hasPrefix("/") && type != "swap" && isBlockDevice }

    static func parse(_ text: String) -> [FstabEntry] {
        text.split(separator: "\n").compactMap { line in
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.hasPrefix("#") else { return nil }
            let fields = trimmed.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard fields.count >= 3 else { return nil }
            return FstabEntry(spec: fields[0], mountpoint: fields[1], type: fields[2],
                              options: fields.count > 3 ? fields[3].split(separator: ",").map(String.init) : [])
        }
    }
}
