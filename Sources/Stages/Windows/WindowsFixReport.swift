/// What the fix stage did to a Windows guest: recorded in metadata and the journal, and
/// read by emit to describe the domain (disk bus, firmware, clock).
public struct WindowsFixReport: Codable, Sendable, Equatable {
    /// What inspection found beyond the common fields.
    public var systemRoot: String
    /// e.g. "ControlSet001": the set `Select\Current` names.
    public var currentControlSet: String
    /// "client" or "server" (libguestfs `inspect_get_product_variant`).
    public var productVariant: String
    /// "bios" or "uefi": uefi when the guest boots through an ESP with a BCD store.
    public var firmware: String
    /// "virtio" when a boot-start storage driver was injected, otherwise "sata".
    public var diskBus: String
    /// Why the disk bus was chosen (logged and shown in metadata).
    public var diskBusReason: String
    /// "virtio" when netkvm was installed or staged, otherwise "e1000e".
    public var nicModel: String
    /// "viostor" or "vioscsi" when injected.
    public var storageDriver: String?
    /// Where the drivers came from (ISO or directory) and the subdirectory used, e.g. "w10/amd64".
    public var driverSource: String?
    /// Guest paths of every file copied into the guest.
    public var filesCopied: [String]
    /// Drivers staged for the first-boot pnputil run.
    public var stagedForFirstBoot: [String]
    /// Every registry value set, created or deleted, in order.
    public var registryChanges: [RegistryChange]

    public init(systemRoot: String, currentControlSet: String, productVariant: String, firmware: String,
                diskBus: String, diskBusReason: String, nicModel: String, storageDriver: String? = nil,
                driverSource: String? = nil, filesCopied: [String] = [], stagedForFirstBoot: [String] = [],
                registryChanges: [RegistryChange] = []) {
        self.systemRoot = systemRoot
        self.currentControlSet = currentControlSet
        self.productVariant = productVariant
        self.firmware = firmware
        self.diskBus = diskBus
        self.diskBusReason = diskBusReason
        self.nicModel = nicModel
        self.storageDriver = storageDriver
        self.driverSource = driverSource
        self.filesCopied = filesCopied
        self.stagedForFirstBoot = stagedForFirstBoot
        self.registryChanges = registryChanges
    }
}

/// One registry edit: which hive, key and value, and the value before and after
/// (nil before: created; nil after: deleted). Values are rendered like `.reg` text
/// (`dword:00000001`, `"text"`, `hex(2):…`).
public struct RegistryChange: Codable, Sendable, Equatable {
    /// Guest path of the hive file, e.g. `/Windows/System32/config/SYSTEM`.
    public var hive: String
    /// Key path inside the hive, backslash-separated, e.g. `ControlSet001\Services\viostor`.
    public var key: String
    /// Value name ("" for the default value).
    public var value: String
    public var before: String?
    public var after: String?

    public init(hive: String, key: String, value: String, before: String?, after: String?) {
        self.hive = hive
        self.key = key
        self.value = value
        self.before = before
        self.after = after
    }
}
