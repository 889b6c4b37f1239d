/// The SYSTEM-hive entries that make Windows load a virtio storage driver at boot and bind
/// it to the virtio controller it has never seen: without them the guest stops with
/// 0x7B INACCESSIBLE_BOOT_DEVICE, however many driver files were copied.
struct WindowsBootDriverRegistration {
    /// The storage class every storport miniport installs under.
    static let scsiAdapterClass = "{4D36E97B-E325-11CE-BFC1-08002BE10318}"

    /// PCI hardware IDs QEMU gives each controller: transitional (DEV_10xx, REV_00) and
    /// modern virtio 1.0 (DEV_104x, REV_01) devices.
    static func pciIDs(for driver: String) -> [String] {
        switch driver {
        case "viostor": ["PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00", "PCI\\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01"]
        case "vioscsi": ["PCI\\VEN_1AF4&DEV_1004&SUBSYS_00081AF4&REV_00", "PCI\\VEN_1AF4&DEV_1048&SUBSYS_11001AF4&REV_01"]
        default: []
        }
    }

    static func description(for driver: String) -> String {
        driver == "vioscsi" ? "Red Hat VirtIO SCSI pass-through controller" : "Red Hat VirtIO SCSI controller"
    }

    let controlSet: String
    let usesDriverDatabase: Bool

    /// Registers `driver` (its `.sys` already in `System32\drivers`) as a boot-start SCSI
    /// miniport and maps its PCI IDs to it: `CriticalDeviceDatabase` before Windows 8,
    /// `DriverDatabase` (device IDs → driver package → service) from Windows 8 on.
    /// `package` is the driver store name (`viostor.inf_amd64_<hash>`) used from Windows 8 on.
    func register(_ driver: String, package: String, in editor: WindowsRegistryEditor) throws {
        let service = "\(controlSet)\\Services\\\(driver)"
        try editor.set(service, "Type", .dword(1))
        try editor.set(service, "Start", .dword(0))
        try editor.set(service, "ErrorControl", .dword(1))
        try editor.set(service, "Group", .string("SCSI miniport"))
        try editor.set(service, "ImagePath", .expandString("system32\\drivers\\\(driver).sys"))
        // What the driver's INF sets for a storport miniport on PCI (interface type 5).
        try editor.set(service + "\\Parameters\\PnpInterface", "5", .dword(1))

        if usesDriverDatabase {
            try registerInDriverDatabase(driver, package: package, in: editor)
        } else {
            for id in Self.pciIDs(for: driver) {
                let key = "\(controlSet)\\Control\\CriticalDeviceDatabase\\" + id.replacingOccurrences(of: "\\", with: "#").lowercased()
                try editor.set(key, "Service", .string(driver))
                try editor.set(key, "ClassGUID", .string(Self.scsiAdapterClass))
            }
        }
    }

    /// The entries Windows 8+ writes when it stages and installs a driver package: the INF
    /// names its package, each device ID ranks the INF, and the package's configuration
    /// names the service.
    private func registerInDriverDatabase(_ driver: String, package: String, in editor: WindowsRegistryEditor) throws {
        let inf = "\(driver).inf"
        let configuration = "\(driver)_inst"
        let database = "DriverDatabase"
        try editor.set("\(database)\\DriverInfFiles\\\(inf)", "", .multiString([package]))
        try editor.set("\(database)\\DriverInfFiles\\\(inf)", "Active", .string(package))
        try editor.set("\(database)\\DriverInfFiles\\\(inf)", "Configurations", .multiString([configuration]))
        let packageKey = "\(database)\\DriverPackages\\\(package)"
        try editor.set(packageKey, "", .string(inf))
        try editor.set(packageKey, "Provider", .string("Red Hat, Inc."))
        try editor.set(packageKey, "SignerScore", .dword(0x0D00_0005))
        try editor.set(packageKey, "StatusFlags", .dword(0x12))
        try editor.set("\(packageKey)\\Configurations\\\(configuration)", "ConfigFlags", .dword(0))
        try editor.set("\(packageKey)\\Configurations\\\(configuration)", "Service", .string(driver))
        for id in Self.pciIDs(for: driver) {
            // Rank 0xFF00 + signed, as the in-box storage packages are ranked.
            try editor.set("\(database)\\DeviceIds\\\(id)", inf, .binary([0x01, 0xFF, 0x00, 0x00]))
            let descriptor = "\(packageKey)\\Descriptors\\\(id)"
            try editor.set(descriptor, "Configuration", .string(configuration))
            try editor.set(descriptor, "Description", .string(Self.description(for: driver)))
            try editor.set(descriptor, "Manufacturer", .string("Red Hat, Inc."))
        }
    }
}
