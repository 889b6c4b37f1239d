import Stages

/// What the Windows path needs to know beyond the common inspection: where the system and
/// hives are, which control set is current, how the guest boots, and whether its volumes
/// can be written at all.
struct WindowsGuest: Sendable, Equatable {
    /// Guest path, e.g. `/Windows`.
    var systemRoot: String
    var currentControlSet: String
    var productVariant: String
    var systemHive: String
    var softwareHive: String
}

enum WindowsInspector {
    static let espTypeGUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    static let bcdPath = "/EFI/Microsoft/Boot/BCD"

    static func describe(_ guest: GuestfsHandle, root: String) throws -> WindowsGuest {
        WindowsGuest(systemRoot: try guest.inspectWindowsSystemroot(root),
                     currentControlSet: try guest.inspectWindowsCurrentControlSet(root),
                     // libguestfs passes InstallationType through ("Client", "Server").
                     productVariant: try guest.inspectProductVariant(root).lowercased(),
                     systemHive: try guest.inspectWindowsSystemHive(root),
                     softwareHive: try guest.inspectWindowsSoftwareHive(root))
    }

    /// Volumes libguestfs sees as BitLocker-encrypted (their contents cannot be read or fixed).
    /// Every partition (and whole disk) is probed: `list_filesystems` leaves out what it
    /// cannot mount, which is exactly what an encrypted volume is.
    static func bitLockerVolumes(_ guest: GuestfsHandle) throws -> [String] {
        let devices = try guest.listPartitions() + (try guest.listDevices())
        return devices.filter { device in
            ((try? guest.vfsType(device)) ?? "").lowercased().contains("bitlocker")
        }
    }

    /// The error for a guest whose system volume is BitLocker-encrypted.
    static func bitLockerError(volumes: [String], disk: String?) -> StageError {
        StageError(.unsupportedGuest, file: disk,
                   "BitLocker-encrypted volume(s) \(volumes.joined(separator: ", ")): the Windows system cannot be read or fixed offline; "
                       + "suspend or turn off BitLocker in the source VM (manage-bde -off C:), wait for decryption to finish, shut down and export again")
    }

    /// A clearer error for an inspection failure with a Windows cause: BitLocker volumes
    /// (inspection finds no OS) or a registry hive hivex cannot parse (libguestfs' inspection
    /// fails with "Hivex.Error"). Nil when the failure has neither cause.
    static func explainInspectionFailure(_ guest: GuestfsHandle, error: StageError, disk: String?) -> StageError? {
        if error.code == .unsupportedGuest, let encrypted = try? bitLockerVolumes(guest), !encrypted.isEmpty {
            return bitLockerError(volumes: encrypted, disk: disk)
        }
        guard error.code == .toolFailed, error.message.contains("Hivex") else { return nil }
        let damaged = unreadableHives(guest)
        let named = damaged.isEmpty ? "a registry hive" : damaged.joined(separator: ", ")
        return StageError(.badInput, file: disk,
                          "the Windows registry hive \(named) cannot be parsed, so the guest cannot be inspected or changed safely "
                              + "(a damaged or partly written hive: repair or restore it in the source VM and export again): \(error.message)")
    }

    /// "device:path" of each SYSTEM/SOFTWARE hive on an NTFS volume that hivex cannot open.
    static func unreadableHives(_ guest: GuestfsHandle) -> [String] {
        // A failed inspection can leave its filesystem mounted.
        try? guest.umountAll()
        guard let filesystems = try? guest.listFilesystems() else { return [] }
        var damaged: [String] = []
        for (device, type) in filesystems.sorted(by: { $0.key < $1.key }) where type == "ntfs" {
            guard (try? guest.mount(device, at: "/", readOnly: true)) != nil else { continue }
            for hive in ["/Windows/System32/config/SYSTEM", "/Windows/System32/config/SOFTWARE"] {
                guard let path = try? guest.caseSensitivePath(hive), (try? guest.isFile(path)) == true else { continue }
                do {
                    try guest.hivexOpen(path, write: false)
                    try? guest.hivexClose()
                } catch {
                    damaged.append("\(device):\(path)")
                }
            }
            try? guest.umount("/")
        }
        return damaged
    }

    /// "uefi" when a FAT filesystem other than the system volume holds the Windows boot
    /// manager's BCD store (an ESP), else "bios". Must run before the system volume is mounted:
    /// each candidate is mounted read-only at / in turn.
    static func firmware(_ guest: GuestfsHandle, systemVolume: String) throws -> (firmware: String, esp: String?) {
        let candidates = try guest.listFilesystems()
            .filter { $0.key != systemVolume && ["vfat", "msdos", "fat", "fat32"].contains($0.value.lowercased()) }
            .keys.sorted()
        for device in candidates {
            do { try guest.mount(device, at: "/", readOnly: true) } catch { continue }
            let hasBCD = (try? guest.isFile(try guest.caseSensitivePath(bcdPath))) ?? false
            try guest.umount("/")
            if hasBCD { return ("uefi", device) }
        }
        return ("bios", nil)
    }

    /// Mounts the system volume read-write, turning ntfs-3g's refusal of a hibernated or
    /// unclean volume into what the operator has to do about it.
    /// ntfs-3g either refuses such a volume or, in current releases, mounts it read-only
    /// without failing; both are caught.
    static func mountSystemVolume(_ guest: GuestfsHandle, device: String, disk: String?) throws {
        do {
            try guest.mount(device, at: "/")
        } catch let error as StageError {
            let text = error.message.lowercased()
            if text.contains("hibernat") || text.contains("unclean") || text.contains("fast restart")
                || text.contains("metadata kept in windows cache") {
                throw uncleanShutdownError(device: device, disk: disk, detail: error.message)
            }
            throw error
        }
        if try guest.isReadOnlyMount("/") {
            let hibernated = (try? guest.isFile("/hiberfil.sys")) == true ? "hiberfil.sys is present" : "the NTFS log is not clean"
            try? guest.umount("/")
            throw uncleanShutdownError(device: device, disk: disk,
                                       detail: "ntfs-3g mounted the volume read-only only; \(hibernated)")
        }
    }

    static func uncleanShutdownError(device: String, disk: String?, detail: String) -> StageError {
        StageError(.unsupportedGuest, file: disk,
                   "the Windows system volume \(device) cannot be written: Windows was not shut down cleanly "
                       + "(hibernated or Fast Startup): boot it and shut down fully (shutdown /s /t 0), or disable Fast Startup "
                       + "(powercfg /h off), then export again (\(detail))")
    }
}

extension GuestfsHandle {
    /// `path` with each existing component in the case the NTFS volume uses, and the
    /// missing tail (to be created) as given: `case_sensitive_path` alone fails when any
    /// component but the last is missing.
    func windowsPath(_ path: String) throws -> String {
        var resolved = ""
        let components = path.split(separator: "/").map(String.init)
        for (index, component) in components.enumerated() {
            let candidate = try caseSensitivePath(resolved + "/" + component)
            guard try exists(candidate) else {
                return ([candidate] + components[(index + 1)...]).joined(separator: "/")
            }
            resolved = candidate
        }
        return resolved.isEmpty ? "/" : resolved
    }
}
