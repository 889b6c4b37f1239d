import Foundation
import Stages

/// The fix-guest stage for Windows, on the appliance the job already launched: makes the
/// guest boot on virtio (viostor registered boot-start, PCI IDs mapped, files in
/// `System32\drivers`), stages the other virtio drivers and the VMware Tools removal for the
/// first boot, and tells emit which firmware, disk bus and NIC model the domain needs.
///
/// Nothing is reported as installed unless its file was copied and read back; the registry
/// is changed only after both hives parsed and the driver set was complete.
struct WindowsGuestFixer: Sendable {
    init() {}

    /// Fixes the Windows guest inspection found. The appliance must be launched with
    /// nothing mounted; on return the system volume is still mounted at / (the caller
    /// unmounts and shuts down). `step` times each named step.
    func fix(guest: GuestfsHandle, inspection: GuestInspection, options: ConversionOptions, disk: String?,
             step: (String, () throws -> Void) throws -> Void) throws -> (report: WindowsFixReport, warnings: [String]) {
        var warnings: [String] = []
        var described: WindowsGuest?
        var firmware = "bios"
        try step("windows-inspect") {
            described = try WindowsInspector.describe(guest, root: inspection.rootDevice)
            firmware = try WindowsInspector.firmware(guest, systemVolume: inspection.rootDevice).firmware
            try WindowsInspector.mountSystemVolume(guest, device: inspection.rootDevice, disk: disk)
        }
        guard let windows = described else {
            throw StageError(.unsupportedGuest, file: disk, "Windows inspection returned nothing for \(inspection.rootDevice)")
        }
        var report = WindowsFixReport(systemRoot: windows.systemRoot, currentControlSet: windows.currentControlSet,
                                      productVariant: windows.productVariant, firmware: firmware,
                                      diskBus: "sata", diskBusReason: "", nicModel: "e1000e")

        // Read both hives before anything is written: a damaged hive stops the job here.
        var build: Int?
        var uninstallCommands: [String] = []
        try step("registry-read") {
            (build, uninstallCommands) = try WindowsRegistryEditor.open(guest, hive: windows.softwareHive, writable: false) { editor in
                let build = try editor.value("Microsoft\\Windows NT\\CurrentVersion", "CurrentBuildNumber")?.text.flatMap { Int($0) }
                return (build, options.removeVMwareTools ? try VMwareToolsRemoval.uninstallCommands(in: editor) : [])
            }.result
            _ = try WindowsRegistryEditor.open(guest, hive: windows.systemHive, writable: false) { editor in
                guard try editor.node(windows.currentControlSet) != nil else {
                    throw StageError(.badInput, file: windows.systemHive, "the SYSTEM hive has no \(windows.currentControlSet) (named by Select\\Current)")
                }
            }
        }
        let release = WindowsRelease(majorVersion: inspection.majorVersion, minorVersion: inspection.minorVersion, build: build,
                                     productName: inspection.productName, productVariant: windows.productVariant, arch: inspection.arch)

        var drivers: [VirtioWinDriver] = []
        var source: VirtioWinDriverSource?
        if options.winVirtio {
            let location = try Self.virtioWinLocation(options: options, release: release, disk: disk)
            let opened = try VirtioWinDriverSource(path: location)
            drivers = try VirtioWinDriverSelection.select(for: release, in: opened.files, source: location)
            source = opened
        } else {
            report.diskBusReason = "win_virtio is off: no virtio drivers were injected, so the disks stay on SATA"
        }

        let systemRoot = try guest.windowsPath(windows.systemRoot)
        let staging = try guest.windowsPath("\(systemRoot)/\(WindowsFirstBoot.directory.replacingOccurrences(of: "\\", with: "/"))")
        var packages: [String: String] = [:]
        if let source, let storage = drivers.first {
            try step("drivers") {
                let copier = DriverCopier(guest: guest, source: source)
                defer { copier.removeScratch() }
                try guest.makeDirectories(staging)
                for driver in drivers {
                    try guest.makeDirectories("\(staging)/\(driver.name)")
                    try copier.copyFiles(of: driver, into: "\(staging)/\(driver.name)")
                }
                let systemDrivers = try guest.windowsPath("\(systemRoot)/System32/drivers")
                for driver in drivers where ["viostor", "vioscsi"].contains(driver.name) {
                    guard let sys = driver.file(withExtension: "sys") else { continue }
                    try copier.copy(sys, to: "\(systemDrivers)/\(driver.name).sys")
                    if release.usesDriverDatabase {
                        let package = try Self.packageName(driver, arch: release.virtioWinArch ?? "amd64", source: source, copier: copier)
                        let repository = try guest.windowsPath("\(systemRoot)/System32/DriverStore/FileRepository/\(package)")
                        try guest.makeDirectories(repository)
                        try copier.copyFiles(of: driver, into: repository)
                        packages[driver.name] = package
                    } else {
                        packages[driver.name] = ""
                    }
                }
                report.filesCopied = copier.copied
                report.storageDriver = storage.name
                report.driverSource = "\(source.location) (\(source.kind.rawValue)): \(storage.directory.split(separator: "/").dropFirst().joined(separator: "/"))"
                report.stagedForFirstBoot = drivers.map(\.name)
                report.diskBus = "virtio"
                report.diskBusReason = "\(storage.name) from \(storage.directory) registered as a boot-start driver"
                report.nicModel = drivers.contains { $0.name == "netkvm" } ? "virtio" : "e1000e"
                if report.nicModel != "virtio" {
                    warnings.append("no netkvm driver for \(release.summary) in \(source.location): the NIC stays e1000e")
                }
            }
        }

        let firstBoot = WindowsFirstBoot(installDrivers: !drivers.isEmpty, uninstallCommands: uninstallCommands)
        try step("registry") {
            let boot = WindowsBootDriverRegistration(controlSet: windows.currentControlSet, usesDriverDatabase: release.usesDriverDatabase)
            let system = try WindowsRegistryEditor.open(guest, hive: windows.systemHive, writable: true) { editor in
                for name in ["viostor", "vioscsi"] {
                    guard let package = packages[name] else { continue }
                    try boot.register(name, package: package, in: editor)
                }
                if options.removeVMwareTools {
                    let disabled = try VMwareToolsRemoval.disableServices(controlSet: windows.currentControlSet, in: editor)
                    if !disabled.isEmpty { warnings.append("VMware Tools services disabled: \(disabled.joined(separator: ", "))") }
                }
            }
            report.registryChanges += system.changes
            let software = try WindowsRegistryEditor.open(guest, hive: windows.softwareHive, writable: true) { editor in
                if !drivers.isEmpty {
                    let key = "Microsoft\\Windows\\CurrentVersion"
                    let entry = "%SystemRoot%\\\(WindowsFirstBoot.directory)"
                    let current = try editor.value(key, "DevicePath")
                    let text = current?.text ?? "%SystemRoot%\\inf"
                    if !text.lowercased().split(separator: ";").contains(where: { $0 == entry.lowercased() }) {
                        let updated = text.isEmpty ? entry : text + ";" + entry
                        try editor.set(key, "DevicePath", current.map { if case .string = $0 { .string(updated) } else { .expandString(updated) } }
                                           ?? .expandString(updated))
                    }
                }
                if firstBoot.isNeeded {
                    try editor.set(WindowsFirstBoot.runOnceKey, WindowsFirstBoot.runOnceValue, WindowsFirstBoot.runOnceCommand)
                }
            }
            report.registryChanges += software.changes
            if firstBoot.isNeeded {
                try guest.makeDirectories(staging)
                let script = "\(staging)/\(WindowsFirstBoot.scriptName)"
                try guest.write(script, firstBoot.script)
                report.filesCopied.append(script)
            }
        }
        if options.removeVMwareTools && uninstallCommands.isEmpty {
            warnings.append("remove_vmware_tools: no VMware Tools uninstall entry found in the SOFTWARE hive")
        }
        return (report, warnings)
    }

    /// Where the drivers come from; win_virtio without a source is a configuration error.
    static func virtioWinLocation(options: ConversionOptions, release: WindowsRelease, disk: String?) throws -> String {
        guard let location = options.virtioWin, !location.isEmpty else {
            throw StageError(.badInput, file: disk,
                             "the guest is \(release.summary) and win_virtio is on, but no virtio-win drivers are configured: "
                                 + "set the key virtio_win (or the environment variable VIRTIO_WIN) to a virtio-win ISO or directory, "
                                 + "or set win_virtio: false to keep SATA disks and an e1000e NIC")
        }
        return location
    }

    /// The driver store folder name Windows would give the package: `<inf>_<arch>_<hash>`.
    static func packageName(_ driver: VirtioWinDriver, arch: String, source: VirtioWinDriverSource,
                            copier: DriverCopier) throws -> String {
        guard let inf = driver.file(withExtension: "inf") else { return "\(driver.name).inf_\(arch.lowercased())_0000000000000000" }
        let digest = try FileDigest.sha256(of: try copier.hostFile(inf))
        return "\(driver.name).inf_\(arch.lowercased())_\(digest.prefix(16))"
    }
}

/// Copies driver files from the virtio-win source into the guest and proves each copy by
/// comparing the guest file's size with the source's.
final class DriverCopier {
    let guest: GuestfsHandle
    let source: VirtioWinDriverSource
    private(set) var copied: [String] = []
    private let scratch: URL
    private var extracted: [String: URL] = [:]

    init(guest: GuestfsHandle, source: VirtioWinDriverSource) {
        self.guest = guest
        self.source = source
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("hyper2kvm-virtio-win-\(UUID().uuidString)")
    }

    func hostFile(_ file: String) throws -> URL {
        if let url = extracted[file] { return url }
        if source.kind == .iso {
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        }
        let url = try source.hostFile(for: file, scratch: scratch)
        extracted[file] = url
        return url
    }

    func copy(_ file: String, to guestPath: String) throws {
        let host = try hostFile(file)
        try guest.upload(host.path, to: guestPath)
        let expected = (try? FileManager.default.attributesOfItem(atPath: host.path)[.size] as? NSNumber)?.int64Value
        let actual = try guest.fileSize(guestPath)
        guard expected == nil || expected == actual else {
            throw StageError(.ioFailed, file: guestPath, "copied \(file) from \(source.location) but the guest file has \(actual) bytes, not \(expected ?? 0)")
        }
        copied.append(guestPath)
    }

    /// Copies every file of `driver` into the guest directory, each under its own name.
    func copyFiles(of driver: VirtioWinDriver, into directory: String) throws {
        for file in driver.files {
            try copy(file, to: "\(directory)/\(VirtioWinDriver.fileName(of: file))")
        }
    }

    func removeScratch() {
        try? FileManager.default.removeItem(at: scratch)
    }
}
