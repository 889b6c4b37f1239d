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

/// BIOS or UEFI for a Linux guest, by precedence: the operator's `vm_uefi`, then what the
/// source description (OVF, manifest) states, then what the fix found on the disk, then
/// BIOS. A source that contradicts its own disk wins, with a warning: the description is
/// what the old hypervisor booted, and the disk evidence can be a leftover (an ESP on a
/// guest reinstalled for BIOS).
public enum FirmwareChoice {
    public static func choose(vmUEFI: Bool?, source: Firmware, disk: FirmwareDecision?) -> (decision: FirmwareDecision, warning: String?) {
        let diskFirmware = disk.map(\.firmware).flatMap { $0 == .unknown ? nil : $0 }
        let diskReasons = disk.map { "the disk shows \($0.firmware.rawValue): \($0.reasons.joined(separator: "; "))" }
        if let vmUEFI {
            let chosen: Firmware = vmUEFI ? .uefi : .bios
            let warning = diskFirmware.flatMap { $0 == chosen ? nil
                : "vm_uefi: \(vmUEFI) overrides the guest, whose disk boots through \($0.rawValue): it may not boot" }
            return (FirmwareDecision(firmware: chosen, decidedBy: "vm_uefi", reasons: ["vm_uefi: \(vmUEFI)"] + (diskReasons.map { [$0] } ?? [])), warning)
        }
        if source != .unknown {
            let warning = diskFirmware.flatMap { $0 == source ? nil
                : "the source description says \(source.rawValue) but the disk shows \($0.rawValue) "
                    + "(\(disk?.reasons.joined(separator: "; ") ?? "")); the description wins: check that the guest boots" }
            return (FirmwareDecision(firmware: source, decidedBy: "source",
                                     reasons: ["the source description (OVF/manifest) says \(source.rawValue)"] + (diskReasons.map { [$0] } ?? [])), warning)
        }
        if let disk, diskFirmware != nil { return (disk, nil) }
        return (FirmwareDecision(firmware: .bios, decidedBy: "default",
                                 reasons: ["neither the source nor the disk says; BIOS, the default"] + (disk?.reasons ?? [])), nil)
    }
}
