import Stages

/// Finds the one operating system on the guest's disks and describes it.
enum GuestInspector {
    /// Inspects; throws a clear error for zero or several operating systems.
    static func inspect(_ guest: GuestfsHandle, disks: [String]) throws -> GuestInspection {
        let roots = try guest.inspectOS()
        let diskList = disks.joined(separator: ", ")
        guard !roots.isEmpty else {
            throw StageError(.unsupportedGuest, file: disks.first,
                             "no operating system found on \(diskList): libguestfs inspection found no root filesystem "
                                 + "(unknown or encrypted filesystem, a guest that was not shut down cleanly, or a data-only disk)")
        }
        guard roots.count == 1 else {
            throw StageError(.unsupportedGuest, file: disks.first,
                             "several operating systems found on \(diskList) (roots: \(roots.joined(separator: ", "))); "
                                 + "multi-boot guests are not converted")
        }
        let root = roots[0]
        // Getters return "unknown" for what inspection could not tell, never fail for it.
        return GuestInspection(
            type: try guest.inspectType(root),
            distro: try guest.inspectDistro(root),
            productName: try guest.inspectProductName(root),
            majorVersion: try guest.inspectMajorVersion(root),
            minorVersion: try guest.inspectMinorVersion(root),
            arch: try guest.inspectArch(root),
            packageFormat: try guest.inspectPackageFormat(root),
            packageManagement: try guest.inspectPackageManagement(root),
            rootDevice: root,
            mountpoints: try guest.inspectMountpoints(root),
            hostname: try guest.inspectHostname(root),
            osinfo: try guest.inspectOsinfo(root),
            installedKernels: [])
    }

    /// Mounts the guest's filesystems, shortest mountpoint first so `/boot` lands on `/`.
    /// Only the root must mount: an fstab entry naming a disk the guest no longer has, or
    /// one libguestfs cannot resolve (by-path/by-id), is skipped with a warning, as the
    /// guest itself would do with `nofail`. Returns the mountpoints mounted, in order.
    static func mountFilesystems(_ guest: GuestfsHandle, inspection: GuestInspection)
        throws -> (mounted: [String], warnings: [String])
    {
        var mounted: [String] = []
        var warnings: [String] = []
        let ordered = inspection.mountpoints.sorted { ($0.key.count, $0.key) < ($1.key.count, $1.key) }
        for (mountpoint, device) in ordered {
            do {
                try guest.mount(device, at: mountpoint)
                mounted.append(mountpoint)
            } catch let error as StageError where mountpoint != "/" {
                warnings.append("\(mountpoint) (\(device)) not mounted, files under it are not fixed: \(error.message)")
            }
        }
        return (mounted, warnings)
    }
}
