/// Turns a device named by the guest (as it was on the old hypervisor) into a stable
/// identifier (`UUID=…`, else `PARTUUID=…`, else `LABEL=…`) by looking at the same
/// filesystem in the appliance.
///
/// Mapping rules:
/// - kernel names (`/dev/sdb2`, `/dev/hdb2`, `/dev/xvdb2`, `/dev/nvme1n1p2`) name disks in
///   the guest's disk order, and the appliance names the disks it was given in the same
///   order, so `/dev/sdb2` in the appliance is the same partition;
/// - by-path/by-id links name the old controller or disk serial and cannot be decoded, so
///   the device is taken from inspection (the fstab mountpoint it is mounted on, which
///   libguestfs resolved), or, for a single-disk guest, from the `-partN` suffix;
/// - a device that does not exist in the appliance is a disk the guest no longer has: it
///   is not resolved (left as it is and reported).
final class StableDeviceResolver {
    private let guest: GuestfsHandle
    private let mountpoints: [String: String]
    private let knownDevices: Set<String>
    private let diskCount: Int
    private var cache: [String: String?] = [:]
    /// Failures of identity lookups, kept for the report rather than failing the job.
    private(set) var lookupErrors: [String] = []

    init(guest: GuestfsHandle, mountpoints: [String: String]) throws {
        self.guest = guest
        self.mountpoints = mountpoints
        let disks = try guest.listDevices()
        self.diskCount = disks.count
        self.knownDevices = Set(disks + (try guest.listPartitions()))
    }

    /// The appliance device a guest reference names, or nil.
    func applianceDevice(for reference: DeviceReference) -> String? {
        switch reference.kind {
        case .kernelName:
            return reference.kind.applianceDevice.flatMap { knownDevices.contains($0) ? $0 : nil }
        case let .byPath(partition), let .byID(partition):
            if let mountpoint = reference.mountpoint, let device = mountpoints[mountpoint], knownDevices.contains(device) {
                return device
            }
            guard diskCount == 1 else { return nil }
            let device = "/dev/sda" + (partition.map(String.init) ?? "")
            return knownDevices.contains(device) ? device : nil
        case .stable, .other:
            return nil
        }
    }

    /// `UUID=…` / `PARTUUID=…` / `LABEL=…` for a guest reference, or nil.
    func stableName(for reference: DeviceReference) -> String? {
        guard let device = applianceDevice(for: reference) else { return nil }
        if let cached = cache[device] { return cached }
        let name = lookUp(device)
        cache[device] = name
        return name
    }

    private func lookUp(_ device: String) -> String? {
        do {
            let uuid = try guest.vfsUUID(device)
            if !uuid.isEmpty { return "UUID=\(uuid)" }
            let tags = try guest.blkid(device)
            if let partUUID = tags["PARTUUID"], !partUUID.isEmpty { return "PARTUUID=\(partUUID)" }
            let label = try guest.vfsLabel(device)
            if !label.isEmpty, !label.contains(where: \.isWhitespace) { return "LABEL=\(label)" }
        } catch {
            lookupErrors.append("\(device): \(error)")
        }
        return nil
    }
}
