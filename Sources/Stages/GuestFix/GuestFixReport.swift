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
                durations: [StepDuration] = [], windows: WindowsFixReport? = nil) {
        self.inspection = inspection
        self.changes = changes
        self.skipped = skipped
        self.warnings = warnings
        self.backupDirectory = backupDirectory
        self.durations = durations
        self.windows = windows
    }
}
