import Foundation
import Stages

/// How a guest config file names a block device, and whether that name survives the move
/// to virtio (where the first disk becomes /dev/vda and by-path/by-id links change).
enum BlockDeviceSpec: Equatable, Sendable {
    /// A kernel name that depends on the bus: /dev/sda1, /dev/hdb, /dev/xvda2, /dev/vdc1,
    /// /dev/nvme0n1p2, /dev/cciss/c0d0p1. `disk` counts from 0 in the guest's disk order.
    case kernelName(disk: Int, partition: Int?)
    /// /dev/disk/by-path/… (names the controller and slot of the old hypervisor).
    case byPath(partition: Int?)
    /// /dev/disk/by-id/… (names the old virtual disk's model and serial).
    case byID(partition: Int?)
    /// UUID=, PARTUUID=, LABEL=, /dev/disk/by-uuid/…, /dev/mapper/…, and the by-id links
    /// udev derives from LVM and MD metadata: already stable.
    case stable
    /// Anything else (proc, tmpfs, /dev/cdrom, network filesystems…): never touched. LVM's
    /// /dev/<vg>/<lv> paths land here too, which is right: they name the volume group and
    /// logical volume, not the bus, so they survive the move unchanged.
    case other

    init(_ spec: String) {
        self = Self.classify(spec)
    }

    /// Whether `fstab_mode` asks for this spec to be replaced by a stable identifier.
    /// `minimal` also leaves /dev/vdX alone: see `DeviceReference.needsRewrite(in:)`.
    func needsStabilising(in mode: ConversionOptions.FstabMode) -> Bool {
        switch (mode, self) {
        case (.noop, _): false
        case (.stabilizeAll, .kernelName), (.minimal, .kernelName), (_, .byPath), (_, .byID): true
        default: false
        }
    }

    /// The appliance's name for a kernel-named device: libguestfs names the disks it is given
    /// sda, sdb, … in the order they were added, which is the guest's disk order.
    var applianceDevice: String? {
        guard case let .kernelName(disk, partition) = self, disk >= 0 else { return nil }
        return "/dev/sd" + Self.diskLetters(disk) + (partition.map(String.init) ?? "")
    }

    /// 0 → "a", 25 → "z", 26 → "aa" (the kernel's sd naming).
    static func diskLetters(_ index: Int) -> String { DiskLetters.of(index) }

    /// "a" → 0, "z" → 25, "aa" → 26; nil when not all lowercase letters.
    static func diskIndex(_ letters: Substring) -> Int? {
        guard !letters.isEmpty else { return nil }
        var index = 0
        for scalar in letters.unicodeScalars {
            guard scalar.value >= 97, scalar.value <= 122 else { return nil }
            index = index * 26 + Int(scalar.value - 96)
        }
        return index - 1
    }

    /// by-id links udev makes from device-mapper, LVM and MD metadata rather than from the
    /// disk's bus or serial: they name the same volume on any hypervisor. Treating them as
    /// disk links would be worse than useless: the fallback "single disk, no -partN suffix"
    /// resolves them to the whole disk, whose UUID is the PV's when LVM uses the bare disk.
    static let stableByIDPrefixes = ["dm-name-", "dm-uuid-", "lvm-pv-uuid-", "md-name-", "md-uuid-"]

    private static func classify(_ spec: String) -> BlockDeviceSpec {
        let upper = spec.uppercased()
        for prefix in ["UUID=", "PARTUUID=", "LABEL=", "PARTLABEL="] where upper.hasPrefix(prefix) {
            return .stable
        }
        if spec.hasPrefix("/dev/disk/by-path/") { return .byPath(partition: trailingPartition(spec)) }
        if spec.hasPrefix("/dev/disk/by-id/") {
            let link = spec.dropFirst("/dev/disk/by-id/".count)
            if stableByIDPrefixes.contains(where: { link.hasPrefix($0) }) { return .stable }
            return .byID(partition: trailingPartition(spec))
        }
        if spec.hasPrefix("/dev/disk/") || spec.hasPrefix("/dev/mapper/") { return .stable }
        guard spec.hasPrefix("/dev/") else { return .other }
        let name = spec.dropFirst("/dev/".count)

        // sdX / hdX / xvdX / vdX followed by an optional partition number.
        for prefix in ["xvd", "sd", "hd", "vd"] where name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            let letters = rest.prefix { $0.isASCII && $0.isLowercase }
            let digits = rest.dropFirst(letters.count)
            guard let disk = diskIndex(letters), digits.allSatisfy(\.isASCIIDigit) else { return .other }
            return .kernelName(disk: disk, partition: digits.isEmpty ? nil : Int(digits))
        }
        // nvme<controller>n<namespace>[p<partition>]: one disk per controller in a VM.
        if name.hasPrefix("nvme") {
            let parts = name.dropFirst(4).split(separator: "n", maxSplits: 1)
            guard parts.count == 2, let controller = Int(parts[0]) else { return .other }
            let namespaceAndPartition = parts[1].split(separator: "p", maxSplits: 1)
            guard let namespace = Int(namespaceAndPartition[0]), namespace >= 1 else { return .other }
            let partition = namespaceAndPartition.count == 2 ? Int(namespaceAndPartition[1]) : nil
            if namespaceAndPartition.count == 2 && partition == nil { return .other }
            return .kernelName(disk: controller + namespace - 1, partition: partition)
        }
        // cciss/c<controller>d<disk>[p<partition>] (HP Smart Array).
        if name.hasPrefix("cciss/c") {
            let rest = name.dropFirst("cciss/c".count)
            let parts = rest.split(separator: "d", maxSplits: 1)
            guard parts.count == 2, Int(parts[0]) != nil else { return .other }
            let diskAndPartition = parts[1].split(separator: "p", maxSplits: 1)
            guard let disk = Int(diskAndPartition[0]) else { return .other }
            let partition = diskAndPartition.count == 2 ? Int(diskAndPartition[1]) : nil
            return .kernelName(disk: disk, partition: partition)
        }
        return .other
    }

    /// `…-part3` → 3 (udev's suffix for partitions in by-path/by-id links).
    private static func trailingPartition(_ spec: String) -> Int? {
        guard let range = spec.range(of: "-part", options: .backwards) else { return nil }
        return Int(spec[range.upperBound...])
    }
}

private extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
