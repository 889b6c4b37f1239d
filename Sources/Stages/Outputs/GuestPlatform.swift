/// What the converted guest's operating system needs from the virtual hardware: Linux
/// guests run on virtio with a UTC clock; Windows guests keep a local-time clock, get
/// Hyper-V enlightenments when asked, and stay on SATA/e1000e unless virtio drivers were
/// really injected (a virtio disk without a boot-start driver is a 0x7B blue screen).
public struct GuestPlatform: Sendable, Equatable {
    public enum DiskBus: String, Sendable, Equatable { case virtio, sata }
    public enum NICModel: String, Sendable, Equatable { case virtio, e1000e }
    public enum Clock: String, Sendable, Equatable { case utc, localtime }

    public var diskBus: DiskBus
    public var nicModel: NICModel
    public var clock: Clock
    public var hypervEnlightenments: Bool
    /// Firmware the guest's disk shows it boots through (nil: go by the source).
    public var detectedFirmware: Firmware?
    /// Standard VGA for guests without a virtio-gpu driver.
    public var video: String

    public init(diskBus: DiskBus = .virtio, nicModel: NICModel = .virtio, clock: Clock = .utc,
                hypervEnlightenments: Bool = false, detectedFirmware: Firmware? = nil, video: String = "virtio") {
        self.diskBus = diskBus
        self.nicModel = nicModel
        self.clock = clock
        self.hypervEnlightenments = hypervEnlightenments
        self.detectedFirmware = detectedFirmware
        self.video = video
    }

    /// Linux and guests that were not inspected.
    public static let linux = GuestPlatform()

    /// A Windows guest as the fix stage left it.
    public static func windows(_ report: WindowsFixReport, options: ConversionOptions) -> GuestPlatform {
        GuestPlatform(diskBus: DiskBus(rawValue: report.diskBus) ?? .sata,
                      nicModel: NICModel(rawValue: report.nicModel) ?? .e1000e,
                      clock: .localtime,
                      hypervEnlightenments: options.winHyperv,
                      detectedFirmware: report.firmware == "uefi" ? .uefi : .bios,
                      video: "vga")
    }

    /// The platform a fix report implies.
    public static func from(_ report: GuestFixReport?, options: ConversionOptions) -> GuestPlatform {
        guard let windows = report?.windows else { return .linux }
        return .windows(windows, options: options)
    }
}
