/// What inspection found in the guest, recorded in the job's metadata.
public struct GuestInspection: Codable, Sendable, Equatable {
    /// "linux", "windows", … (libguestfs `inspect_get_type`).
    public var type: String
    /// "debian", "ubuntu", "rhel", … or "unknown".
    public var distro: String
    public var productName: String
    public var majorVersion: Int
    public var minorVersion: Int
    public var arch: String
    /// "deb", "rpm", … or "unknown".
    public var packageFormat: String
    /// "apt", "dnf", … or "unknown".
    public var packageManagement: String
    /// The root filesystem as the appliance names it (e.g. /dev/sda1).
    public var rootDevice: String
    /// Mountpoint → appliance device, from the guest's fstab.
    public var mountpoints: [String: String]
    public var hostname: String
    public var osinfo: String
    /// Kernel versions that have both `/boot/vmlinuz-<v>` and `/lib/modules/<v>`.
    public var installedKernels: [String]

    public init(type: String, distro: String, productName: String, majorVersion: Int, minorVersion: Int,
                arch: String, packageFormat: String, packageManagement: String, rootDevice: String,
                mountpoints: [String: String], hostname: String, osinfo: String, installedKernels: [String]) {
        self.type = type
        self.distro = distro
        self.productName = productName
        self.majorVersion = majorVersion
        self.minorVersion = minorVersion
        self.arch = arch
        self.packageFormat = packageFormat
        self.packageManagement = packageManagement
        self.rootDevice = rootDevice
        self.mountpoints = mountpoints
        self.hostname = hostname
        self.osinfo = osinfo
        self.installedKernels = installedKernels
    }

    /// What a guest whose root is encrypted shows: only the encrypted device, nothing inside.
    public static func encrypted(rootDevice: String) -> GuestInspection {
        GuestInspection(type: "linux", distro: "unknown", productName: "encrypted (LUKS) root, not opened",
                        majorVersion: 0, minorVersion: 0, arch: "unknown", packageFormat: "unknown",
                        packageManagement: "unknown", rootDevice: rootDevice, mountpoints: [:], hostname: "unknown",
                        osinfo: "unknown", installedKernels: [])
    }

    /// Distros whose layout the fixes were written and tested against; others get only the
    /// generic fixes (the ones that edit files found by path), and the report says so.
    public var isKnownLinuxDistro: Bool {
        type == "linux" && Self.knownDistros.contains(distro)
    }

    static let knownDistros: Set<String> = [
        "debian", "ubuntu", "linuxmint", "kalilinux", "rhel", "centos", "fedora", "rocky", "almalinux",
        "oraclelinux", "sles", "suse-based", "opensuse", "archlinux", "alpinelinux", "photon", "altlinux",
    ]
}

/// One edit made to the guest: which file, and its content before and after.
public struct GuestFixChange: Codable, Sendable, Equatable {
    /// "fstab", "crypttab", "bootloader", "initramfs", "network".
    public var area: String
    /// Path inside the guest.
    public var file: String
    /// The changed lines (or a summary such as "removed") before and after.
    public var before: String
    public var after: String

    public init(area: String, file: String, before: String, after: String) {
        self.area = area
        self.file = file
        self.before = before
        self.after = after
    }
}

/// A fix that did not run, or ran only partly, and why.
public struct SkippedGuestFix: Codable, Sendable, Equatable {
    public var area: String
    public var reason: String
    public init(area: String, reason: String) {
        self.area = area
        self.reason = reason
    }
}

/// Everything the fix stage did to one guest, for metadata and the journal.
public struct GuestFixReport: Codable, Sendable, Equatable {
    public var inspection: GuestInspection
    public var changes: [GuestFixChange]
    public var skipped: [SkippedGuestFix]
    /// Notes an operator should read (unmappable devices, unknown distro…).
    public var warnings: [String]
    /// Where originals of changed files were kept inside the guest.
    public var backupDirectory: String
    /// Seconds per step ("launch", "inspect", "fstab", "initramfs", …), in order.
    public var durations: [StepDuration]
    /// Set for Windows guests: drivers, registry changes and the domain settings they imply.
    public var windows: WindowsFixReport?
    /// Linux guests: BIOS or UEFI as the disk shows it, with the reasons (nil: not decided,
    /// and in reports of earlier versions).
    public var firmware: FirmwareDecision?
    /// Linux guests: the boot chain as read back after the fix.
    public var bootCheck: BootChainCheck?
    /// Why the converted guest may not boot: layouts the fix does not handle (LUKS or md
    /// root, unknown initramfs generator or boot loader) and boot check failures. Non-empty
    /// makes the job's result "converted, boot not ensured".
    public var bootNotEnsured: [String]?

    public struct StepDuration: Codable, Sendable, Equatable {
        public var step: String
        public var seconds: Double
        public init(step: String, seconds: Double) {
            self.step = step
            self.seconds = seconds
        }
    }

    public init(inspection: GuestInspection, changes: [GuestFixChange] = [], skipped: [SkippedGuestFix] = [],
                warnings: [String] = [], backupDirectory: String = "/var/lib/hyper2kvm/original-files",
                durations: [StepDuration] = [], windows: WindowsFixReport? = nil, firmware: FirmwareDecision? = nil,
                bootCheck: BootChainCheck? = nil, bootNotEnsured: [String]? = nil) {
        self.inspection = inspection
        self.changes = changes
        self.skipped = skipped
        self.warnings = warnings
        self.backupDirectory = backupDirectory
        self.durations = durations
        self.windows = windows
        self.firmware = firmware
        self.bootCheck = bootCheck
        self.bootNotEnsured = bootNotEnsured
    }
}

/// BIOS or UEFI for the converted guest, and why (metadata.json `boot_firmware`).
public struct FirmwareDecision: Codable, Sendable, Equatable {
    /// bios, uefi, or unknown (the disk showed neither).
    public var firmware: Firmware
    /// "disk" (what the fix found on the guest's disks), "source" (the OVF/manifest said
    /// it), "vm_uefi" (the operator's setting).
    public var decidedBy: String
    /// What showed it: "EFI System Partition /dev/sda1", "boot code in the MBR"…
    public var reasons: [String]

    public init(firmware: Firmware, decidedBy: String, reasons: [String]) {
        self.firmware = firmware
        self.decidedBy = decidedBy
        self.reasons = reasons
    }

    enum CodingKeys: String, CodingKey {
        case firmware, reasons
        case decidedBy = "decided_by"
    }
}

/// The check, after the fix, that the converted guest's boot chain resolves (read back from
/// the written disks): metadata.json `boot_check`.
public struct BootChainCheck: Codable, Sendable, Equatable {
    /// Each boot loader entry checked, default first.
    public var entries: [Entry]
    /// Why the guest may not boot on virtio; empty when the chain resolves.
    public var problems: [String]
    /// Checks that passed ("root=UUID=… names /dev/sda2", "initramfs holds virtio_blk…").
    public var passed: [String]

    public var ensured: Bool { problems.isEmpty }

    public struct Entry: Codable, Sendable, Equatable {
        /// The config file and the entry's title.
        public var config: String
        public var title: String
        /// Guest paths of the kernel and initramfs the entry loads.
        public var kernel: String
        public var initramfs: [String]
        public init(config: String, title: String, kernel: String, initramfs: [String]) {
            self.config = config
            self.title = title
            self.kernel = kernel
            self.initramfs = initramfs
        }
    }

    public init(entries: [Entry] = [], problems: [String] = [], passed: [String] = []) {
        self.entries = entries
        self.problems = problems
        self.passed = passed
    }

    enum CodingKeys: String, CodingKey { case ensured, entries, problems, passed }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        entries = try container.decode([Entry].self, forKey: .entries)
        problems = try container.decode([String].self, forKey: .problems)
        passed = try container.decode([String].self, forKey: .passed)
    }

    /// `ensured` is written for readers of metadata.json; it is derived, never read back.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(ensured, forKey: .ensured)
        try container.encode(entries, forKey: .entries)
        try container.encode(problems, forKey: .problems)
        try container.encode(passed, forKey: .passed)
    }
}

extension GuestFixReport {
    /// What the job reports for a guest whose fix or boot check left doubt.
    public static let bootNotEnsuredResult = "converted, boot not ensured"

    /// Why the converted guest may not boot (unhandled layouts, a failed boot check), or
    /// empty. Windows guests and reports of earlier versions have none.
    public var bootNotEnsuredReasons: [String] { bootNotEnsured ?? [] }

    /// "converted, boot not ensured: <reasons>" (the first 400 characters), or nil when
    /// nothing casts doubt on the boot.
    public var bootResult: String? {
        let reasons = bootNotEnsuredReasons
        guard !reasons.isEmpty else { return nil }
        let text = Self.bootNotEnsuredResult + ": " + reasons.joined(separator: "; ")
        return text.count > 400 ? String(text.prefix(399)) + "…" : text
    }
}
