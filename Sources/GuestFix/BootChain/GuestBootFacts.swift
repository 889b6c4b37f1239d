import Foundation
import Stages

/// Reads, through the appliance, what the boot chain pure types decide on: every block
/// device with its names (`GuestDeviceMap`), the disk's firmware evidence (`DiskBootFacts`)
/// and the boot loader entries with the files they load (`ResolvedBootEntry`).
enum GuestBootFacts {
    static let espGUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    static let biosBootGUID = "21686148-6449-6E6F-744E-656564454649"

    /// Every disk, partition, logical volume and md array, with blkid's names for it. An md
    /// array gets the names the guest may use for it (``MDArrayNames``), those in the mdadm.conf
    /// of `root` included (mounted read-only for the read, and unmounted again).
    static func devices(_ guest: GuestfsHandle, root: String) throws -> GuestDeviceMap {
        let disks = try guest.listDevices()
        var devices: [GuestBlockDevice] = []
        func described(_ device: GuestBlockDevice) -> GuestBlockDevice {
            var device = device
            // blkid fails for a device with no signature: it then has no names to match.
            guard let tags = try? guest.blkid(device.device) else { return device }
            device.uuid = tags["UUID"] ?? ""
            device.partUUID = tags["PARTUUID"] ?? ""
            device.label = tags["LABEL"] ?? ""
            device.partLabel = tags["PARTLABEL"] ?? ""
            device.type = tags["TYPE"] ?? ""
            return device
        }
        for (index, disk) in disks.enumerated() {
            devices.append(described(GuestBlockDevice(device: disk, disk: index, partition: nil)))
        }
        for partition in try guest.listPartitions() {
            let disk = try? guest.partitionDisk(partition)
            devices.append(described(GuestBlockDevice(device: partition, disk: disk.flatMap { disks.firstIndex(of: $0) },
                                                      partition: try? guest.partitionNumber(partition))))
        }
        for volume in (try? guest.logicalVolumes()) ?? [] {
            let name = volume.dropFirst("/dev/".count)
            var device = described(GuestBlockDevice(device: volume, logicalVolume: String(name)))
            if let group = name.split(separator: "/").first,
               let groupUUID = try? guest.volumeGroupUUID(String(group)), let volumeUUID = try? guest.logicalVolumeUUID(volume) {
                device.deviceMapperUUID = GuestDeviceMap.lvmDeviceMapperUUID(group: groupUUID, volume: volumeUUID)
            }
            devices.append(device)
        }
        let arrays = (try? guest.mdDevices()) ?? []
        let mdadmConf = arrays.isEmpty ? "" : Self.mdadmConf(guest, root: root)
        for array in arrays {
            var device = described(GuestBlockDevice(device: array))
            let detail = (try? guest.mdDetail(array)) ?? [:]
            device.aliases = MDArrayNames.aliases(detail: detail)
                + (MDArrayNames.uuid(detail: detail).map { MDArrayNames.configuredNames(mdadmConf: mdadmConf, uuid: $0) } ?? [])
            devices.append(device)
        }
        return GuestDeviceMap(devices: devices)
    }

    /// The guest's mdadm.conf (Debian's /etc/mdadm/mdadm.conf, else RHEL's /etc/mdadm.conf),
    /// or "" when root cannot be mounted or has none.
    private static func mdadmConf(_ guest: GuestfsHandle, root: String) -> String {
        guard (try? guest.mount(root, at: "/", readOnly: true)) != nil else { return "" }
        defer { try? guest.umountAll() }
        for path in ["/etc/mdadm/mdadm.conf", "/etc/mdadm.conf"] where (try? guest.isFile(path)) == true {
            if let data = try? guest.readFile(path) { return String(decoding: data.prefix(1 << 20), as: UTF8.self) }
        }
        return ""
    }

    /// The partition-level evidence: partition table, ESP and BIOS boot partitions, EFI
    /// binaries on FAT filesystems, MBR boot code. Must run before the guest is mounted:
    /// each FAT filesystem is mounted read-only at / in turn to look for `EFI/*/*.efi`.
    static func partitionFacts(_ guest: GuestfsHandle, devices: GuestDeviceMap, bootDisk: String) throws -> DiskBootFacts {
        var facts = DiskBootFacts()
        facts.partitionTable = try? guest.partitionTableType(bootDisk)
        if let code = try? guest.readDevice(bootDisk, count: 440, offset: 0) {
            facts.mbrBootCode = code.contains { $0 != 0 }
        }
        for device in devices.devices {
            guard let partition = device.partition, let diskIndex = device.disk else { continue }
            let disks = devices.devices.filter { $0.disk == diskIndex && $0.partition == nil }
            guard let disk = disks.first?.device, let table = try? guest.partitionTableType(disk) else { continue }
            if table == "gpt", let type = try? guest.gptType(disk, partition: partition) {
                if type.uppercased() == espGUID { facts.espPartitions.append(device.device) }
                if type.uppercased() == biosBootGUID { facts.biosBootPartitions.append(device.device) }
            } else if table == "msdos", (try? guest.mbrID(disk, partition: partition)) == 0xEF {
                facts.espPartitions.append(device.device)
            }
        }
        for device in devices.devices where ["vfat", "msdos"].contains(device.type.lowercased()) {
            guard (try? guest.mount(device.device, at: "/", readOnly: true)) != nil else { continue }
            var binaries: [String] = []
            for pattern in ["/EFI/*/*.efi", "/EFI/*/*.EFI", "/efi/*/*.efi", "/efi/*/*.EFI"] {
                binaries += ((try? guest.glob(pattern)) ?? []).filter { !binaries.contains($0) }
            }
            try guest.umount("/")
            if !binaries.isEmpty { facts.efiBinaries[device.device] = binaries.sorted() }
        }
        return facts
    }

    /// What the mounted guest says: grub platforms installed, and whether fstab mounts the ESP.
    static func addGuestFacts(_ guest: GuestfsHandle, fstab: [FstabEntry], to facts: inout DiskBootFacts) throws {
        for platform in ["x86_64-efi", "i386-efi", "i386-pc"] {
            for directory in ["/boot/grub", "/boot/grub2"] where try guest.isDirectory("\(directory)/\(platform)") {
                facts.grubPlatforms.insert(platform)
            }
        }
        if facts.grubPlatforms.isEmpty {
            // grub-install copies its modules to /boot/grub/<platform>; without that, the
            // installed package's module directory is the next best sign.
            for platform in ["x86_64-efi", "i386-pc"] where try guest.isDirectory("/usr/lib/grub/\(platform)") {
                facts.grubPlatforms.insert(platform)
            }
        }
        facts.mountsESP = fstab.contains { $0.mountpoint == "/boot/efi" || $0.mountpoint == "/efi" }
    }
}

/// A boot loader entry with the guest paths (symlinks resolved) of what it loads.
struct ResolvedBootEntry: Equatable, Sendable {
    var entry: BootEntry
    var kernel: String
    var initrds: [String]
    /// From the kernel's file name once resolved; nil when it carries none.
    var version: String?
}

/// Finds the boot loader's entries in the mounted guest and where their files really are.
struct BootEntryFinder {
    let guest: GuestfsHandle
    let resolver: BootPathResolver

    static let grubConfigs = ["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"]
    static let efiGrubConfigs = "/boot/efi/EFI/*/grub.cfg"
    static let blsDirectories = ["/boot/loader/entries", "/boot/efi/loader/entries", "/efi/loader/entries"]

    /// The entries (default first) and the boot loader that holds them; nil boot loader when
    /// no config we know is there.
    func find() throws -> (loader: String?, entries: [ResolvedBootEntry]) {
        var entries: [BootEntry] = []
        var loader: String?
        var configs = Self.grubConfigs.filter { (try? guest.isFile($0)) == true }
        configs += ((try? guest.glob(Self.efiGrubConfigs)) ?? []).sorted()
        var bls = false
        for config in configs {
            let text = String(decoding: try guest.readFile(config), as: UTF8.self)
            let found = BootEntryParser.grubEntries(text, config: config)
            if !found.isEmpty || BootEntryParser.usesBLS(text) { loader = loader ?? "grub (\(config))" }
            entries += found
            bls = bls || BootEntryParser.usesBLS(text)
        }
        for directory in Self.blsDirectories where (try? guest.isDirectory(directory)) == true {
            let files = ((try? guest.glob("\(directory)/*.conf")) ?? []).sorted().reversed()  // newest version first
            var found = try files.compactMap { BootEntryParser.blsEntry(String(decoding: try guest.readFile($0), as: UTF8.self), config: $0) }
            guard !found.isEmpty else { continue }
            // `options $kernelopts` (RHEL 8), `initrd … $tuned_initrd` (RHEL 8 and 9): grub's
            // blscfg expands the variables from its environment block.
            let environment = grubEnvironment()
            found = found.map { $0.expandingVariables(from: environment) }
            if loader == nil { loader = "systemd-boot (\(directory))" } else if bls { loader = (loader ?? "") + " with BLS entries" }
            entries += found
        }
        return (loader, entries.map(resolve))
    }

    /// The first grub environment block the guest has, where grub's blscfg reads it.
    private func grubEnvironment() -> GrubEnvironmentBlock? {
        let paths = BootloaderFixer.grubEnvironments.flatMap { pattern in
            pattern.contains("*") ? ((try? guest.glob(pattern)) ?? []).sorted() : [pattern]
        }
        for path in paths where (try? guest.isFile(path)) == true {
            if let data = try? guest.readFile(path), let block = GrubEnvironmentBlock(String(decoding: data, as: UTF8.self)) {
                return block
            }
        }
        return nil
    }

    private func resolve(_ entry: BootEntry) -> ResolvedBootEntry {
        func real(_ path: String) -> String {
            let guestPath = resolver.guestPath(path, in: entry)
            guard (try? guest.exists(guestPath)) == true, let resolved = try? guest.realpath(guestPath) else { return guestPath }
            return resolved
        }
        let kernel = real(entry.kernel)
        return ResolvedBootEntry(entry: entry, kernel: kernel, initrds: entry.initrds.map(real),
                                 version: BootEntry.version(ofKernelFile: kernel) ?? entry.kernelVersion)
    }
}
