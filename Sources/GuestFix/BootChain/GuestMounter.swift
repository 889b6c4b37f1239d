import Stages

/// Mounts the guest's filesystems where its fstab puts them, placing each device by the
/// source's own disks (`GuestDeviceMap`) before falling back on what inspection resolved:
/// inspection cannot follow a by-path or by-id link, and a /boot it left unmounted made the
/// fix write the initramfs into the root filesystem, where the boot loader never reads it.
struct GuestMounter {
    let guest: GuestfsHandle
    let devices: GuestDeviceMap

    struct Plan: Equatable, Sendable {
        /// Mountpoint → appliance device, root first when mounted in `ordered` order.
        var mountpoints: [String: String]
        var fstab: [FstabEntry]
        var warnings: [String]
        var ordered: [(String, String)] {
            mountpoints.sorted { ($0.key.count, $0.key) < ($1.key.count, $1.key) }.map { ($0.key, $0.value) }
        }
        static func == (lhs: Plan, rhs: Plan) -> Bool {
            lhs.mountpoints == rhs.mountpoints && lhs.fstab == rhs.fstab && lhs.warnings == rhs.warnings
        }
    }

    /// Where each fstab filesystem is: the device map's answer, else inspection's, else none
    /// (with a warning saying why). Pure, given the fstab text.
    static func plan(fstabText: String?, root: String, inspected: [String: String], devices: GuestDeviceMap) -> Plan {
        let fstab = FstabEntry.parse(fstabText ?? "")
        var mountpoints = inspected
        mountpoints["/"] = root
        var warnings: [String] = []
        // noauto entries are not mounted at boot, so the fix need not see them either.
        for entry in fstab where entry.isMountable && entry.mountpoint != "/" && !entry.options.contains("noauto") {
            switch devices.resolve(entry.spec) {
            case .device(let resolved):
                let device = mountable(resolved, options: entry.options)
                // Inspection hands back a name it could not resolve as it found it: only a
                // device of the disks it placed differently is worth a word.
                if let previous = inspected[entry.mountpoint], previous != device,
                   devices.devices.contains(where: { $0.device == previous }) {
                    warnings.append("\(entry.mountpoint): fstab's \(entry.spec) is \(device) on the source's disks, "
                        + "not \(previous) as inspection guessed; mounted \(device)")
                }
                mountpoints[entry.mountpoint] = device
            case .unresolved(let reason):
                if inspected[entry.mountpoint] == nil {
                    warnings.append("\(entry.mountpoint) (\(entry.spec)) not mounted, files under it are not fixed: \(reason)")
                }
            }
        }
        return Plan(mountpoints: mountpoints, fstab: fstab, warnings: warnings)
    }

    /// What libguestfs mounts for a device with these fstab options: a btrfs subvolume
    /// (`subvol=/@/var`, SUSE's layout) is `btrfsvol:<device>/<subvolume>`; the device alone
    /// would mount the default subvolume (the root snapshot) at /var, and the fix would write
    /// under /var into the root filesystem.
    static func mountable(_ device: String, options: [String]) -> String {
        guard let subvolume = options.first(where: { $0.hasPrefix("subvol=") })?.dropFirst("subvol=".count) else { return device }
        let path = subvolume.drop { $0 == "/" }
        return path.isEmpty ? device : "btrfsvol:\(device)/\(path)"
    }

    /// Mounts root, reads its fstab, and mounts the rest by the plan. Only the root must
    /// mount; another filesystem that does not is skipped with a warning, as the guest
    /// itself would do with `nofail`. Returns the plan and the mountpoints mounted, in order.
    func mount(root: String, inspected: [String: String], readOnly: Bool = false) throws -> (plan: Plan, mounted: [String]) {
        try guest.mount(root, at: "/", readOnly: readOnly)
        let fstabText = try guest.isFile("/etc/fstab") ? String(decoding: try guest.readFile("/etc/fstab"), as: UTF8.self) : nil
        var plan = Self.plan(fstabText: fstabText, root: root, inspected: inspected, devices: devices)
        let mounted = try mount(plan: &plan, readOnly: readOnly, rootMounted: true)
        return (plan, mounted)
    }

    /// Mounts a plan's filesystems (root first); a non-root one that fails is dropped from
    /// the plan with a warning.
    func mount(plan: inout Plan, readOnly: Bool, rootMounted: Bool = false) throws -> [String] {
        var mounted: [String] = []
        for (mountpoint, device) in plan.ordered {
            if mountpoint == "/" && rootMounted { mounted.append("/"); continue }
            do {
                try guest.mount(device, at: mountpoint, readOnly: readOnly)
                mounted.append(mountpoint)
            } catch let error as StageError where mountpoint != "/" {
                plan.mountpoints[mountpoint] = nil
                plan.warnings.append("\(mountpoint) (\(device)) not mounted, files under it are not fixed: \(error.message)")
            }
        }
        return mounted
    }

    /// Mountpoint → filesystem UUID, for `BootPathResolver` (grub's `search --fs-uuid`).
    func filesystemUUIDs(_ plan: Plan) -> [String: String] {
        plan.mountpoints.mapValues { device in devices.devices.first { $0.device == device }?.uuid ?? "" }
    }
}
