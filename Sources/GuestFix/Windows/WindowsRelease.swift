/// A Windows release as the virtio-win driver tree names it: which `<os>` directories
/// (`viostor/<os>/<arch>/`) hold drivers built for the guest, and how the guest finds a
/// boot storage driver.
struct WindowsRelease: Sendable, Equatable {
    var majorVersion: Int
    var minorVersion: Int
    /// `CurrentBuildNumber` from the SOFTWARE hive, when readable: it alone separates
    /// Windows 11 from 10 and the Server 2016/2019/2022/2025 releases (all NT 10.0).
    var build: Int?
    var productName: String
    var isServer: Bool
    /// libguestfs' name: "x86_64", "i386", "aarch64".
    var arch: String

    init(majorVersion: Int, minorVersion: Int, build: Int?, productName: String, productVariant: String, arch: String) {
        self.majorVersion = majorVersion
        self.minorVersion = minorVersion
        self.build = build
        self.productName = productName
        // Older hives lack InstallationType; the product name still says "Server".
        self.isServer = productVariant.lowercased() == "server" || productName.localizedCaseInsensitiveContains("server")
        self.arch = arch
    }

    /// The virtio-win architecture directory, or nil for an architecture it has no drivers for.
    var virtioWinArch: String? {
        switch arch {
        case "x86_64": "amd64"
        case "i386", "i486", "i586", "i686", "x86": "x86"
        case "aarch64": "ARM64"
        default: nil
        }
    }

    /// The `<os>` directories to look in, best first. A newer release falls back to its
    /// predecessor only where the driver model is unchanged and virtio-win long shipped
    /// one build for both (w11 → w10, 2k25 → 2k22).
    var virtioWinDirectories: [String] {
        switch (majorVersion, minorVersion) {
        case (5, 1): return ["xp"]
        case (5, 2): return isServer ? ["2k3"] : ["xp"]
        case (6, 0): return ["2k8"]
        case (6, 1): return isServer ? ["2k8R2"] : ["w7"]
        case (6, 2): return isServer ? ["2k12"] : ["w8"]
        case (6, 3): return isServer ? ["2k12R2"] : ["w8.1"]
        case (10, _):
            if isServer {
                switch serverGeneration {
                case 2025: return ["2k25", "2k22"]
                case 2022: return ["2k22"]
                case 2019: return ["2k19"]
                default: return ["2k16"]
                }
            }
            return isWindows11 ? ["w11", "w10"] : ["w10"]
        default: return []
        }
    }

    /// Windows 8 / Server 2012 (NT 6.2) and later find the boot storage driver for a new
    /// controller through `DriverDatabase`; earlier releases through `CriticalDeviceDatabase`.
    var usesDriverDatabase: Bool {
        (majorVersion, minorVersion) >= (6, 2)
    }

    /// For messages: "Windows 10 Pro (10.0 build 19045, x86_64)".
    var summary: String {
        "\(productName) (\(majorVersion).\(minorVersion)\(build.map { " build \($0)" } ?? ""), \(arch))"
    }

    /// Windows 11 still calls itself "Windows 10" in ProductName; the build number tells.
    private var isWindows11: Bool {
        if let build { return build >= 22000 }
        return productName.contains("Windows 11")
    }

    private var serverGeneration: Int {
        if let build {
            if build >= 26100 { return 2025 }
            if build >= 20348 { return 2022 }
            if build >= 17763 { return 2019 }
            return 2016
        }
        for year in [2025, 2022, 2019] where productName.contains(String(year)) { return year }
        return 2016
    }
}
