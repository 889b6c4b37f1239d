import Foundation

/// What a `.vmx` says about the VM, decided from its keys alone (no file is opened here):
/// name, memory, vCPUs, firmware, NICs and the disks in the order the VM sees them.
///
/// - Disks: `scsiN:M`, `sataN:M`, `nvmeN:M`, `ideN:M` devices with `present = "TRUE"` (VMware's
///   default for a device is absent) on a controller that is not `present = "FALSE"`, ordered
///   by controller type (SCSI, SATA, NVMe, IDE: VMware's own default boot order puts the SCSI
///   disk first), then controller index, then unit. A CD-ROM or floppy image is noted, not converted;
///   a raw device mapping or pass-through device is refused (there is no file to convert).
/// - NICs: `ethernetN` with `present = "TRUE"`, in N order; the MAC is `address` when
///   `addressType = "static"`, else `generatedAddress` (what the running VM used).
/// - Firmware: `firmware = "efi"` is UEFI, `"bios"` or none is BIOS; Secure Boot implies UEFI.
public struct VMXSettings: Sendable, Equatable {
    public struct Disk: Sendable, Equatable {
        /// `scsi0:0`, as written in the file.
        public var device: String
        public var fileName: String
    }

    public var name: String?
    public var memoryMiB: Int?
    public var vcpus: Int?
    public var firmware: Firmware
    public var guestOS: String?
    public var disks: [Disk] = []
    public var nics: [NetworkInterface] = []
    /// `nvram`, `extendedConfigFile`, CD-ROM images…: files the VM names that are not its disks.
    public var otherFiles: [String] = []
    /// What was read and what was passed over, for the job's facts.
    public var notes: [String] = []

    /// Controller types in disk order, with the largest bus and unit numbers VMware allows (with margin).
    static let controllers: [(prefix: String, buses: Int, units: Int)] = [("scsi", 4, 64), ("sata", 4, 30), ("nvme", 4, 64), ("ide", 2, 2)]
    static let maximumNICs = 10

    public init(_ vmx: VMXFile, file: String) throws {
        name = vmx["displayName"].flatMap { $0.isEmpty ? nil : $0 }
        memoryMiB = try Self.integer(vmx, "memsize", file: file)
        vcpus = try Self.integer(vmx, "numvcpus", file: file)
        guestOS = vmx["guestOS"]
        if let cores = try Self.integer(vmx, "cpuid.coresPerSocket", file: file) {
            let total = vcpus ?? 1
            guard cores > 0, total % cores == 0 else {
                throw StageError(.badInput, file: file, "cpuid.coresPerSocket \(cores) does not divide numvcpus \(total)")
            }
            notes.append("\(total) vCPU(s) as \(total / cores) socket(s) of \(cores) core(s) (cpuid.coresPerSocket); the domain gets \(total) vCPU(s)")
        }
        firmware = try Self.firmware(vmx, file: file, notes: &notes)
        nics = try Self.nics(vmx, file: file, notes: &notes)
        try readDevices(vmx, file: file)
        for key in ["nvram", "extendedConfigFile"] {
            if let value = vmx[key], !value.isEmpty { otherFiles.append(value) }
        }
    }

    static func integer(_ vmx: VMXFile, _ key: String, file: String) throws -> Int? {
        guard let text = vmx[key] else { return nil }
        guard !text.isEmpty, text.count <= 12, text.allSatisfy(\.isASCII), text.allSatisfy(\.isNumber), let value = Int(text) else {
            throw StageError(.badInput, file: file, "\(vmx.written(key)) is \(String(text.prefix(40)).debugDescription), not a whole number")
        }
        return value
    }

    static func flag(_ vmx: VMXFile, _ key: String) -> Bool? {
        vmx[key].map { ["true", "yes", "1"].contains($0.lowercased()) }
    }

    private static func firmware(_ vmx: VMXFile, file: String, notes: inout [String]) throws -> Firmware {
        let secureBoot = flag(vmx, "uefi.secureBoot.enabled") == true
        let firmware: Firmware
        switch vmx["firmware"]?.lowercased() {
        case nil, "bios": firmware = secureBoot ? .uefi : .bios
        case "efi": firmware = .uefi
        case let other?:
            throw StageError(.badInput, file: file, "firmware \(String(other.prefix(40)).debugDescription) is neither \"bios\" nor \"efi\"")
        }
        if secureBoot {
            notes.append("the source VM had UEFI Secure Boot on: the converted guest boots UEFI (OVMF) without Secure Boot")
        }
        return firmware
    }

    private static func nics(_ vmx: VMXFile, file: String, notes: inout [String]) throws -> [NetworkInterface] {
        var found: [NetworkInterface] = []
        for index in 0..<maximumNICs {
            let prefix = "ethernet\(index)."
            guard flag(vmx, prefix + "present") == true else { continue }
            let addressType = vmx[prefix + "addressType"]?.lowercased()
            let text = addressType == "static" ? vmx[prefix + "address"] : vmx[prefix + "generatedAddress"] ?? vmx[prefix + "address"]
            var mac: String?
            if let text {
                guard let normalised = OVFInterpreter.normalisedMAC(text) else {
                    throw StageError(.badInput, file: file, "ethernet\(index) has a malformed MAC address \(String(text.prefix(40)).debugDescription)")
                }
                mac = normalised
            } else {
                notes.append("ethernet\(index) has no MAC address in the .vmx (\(addressType ?? "generated") address not yet assigned): libvirt will give it one")
            }
            if let model = vmx[prefix + "virtualDev"] {
                notes.append("ethernet\(index): \(model) becomes virtio")
            }
            found.append(NetworkInterface(mac: mac, network: vmx[prefix + "networkName"]))
        }
        let beyond = vmx.keys.filter { $0.hasPrefix("ethernet") && $0.hasSuffix(".present") && Int($0.dropFirst(8).prefix { $0.isNumber }) ?? 0 >= maximumNICs }
        if !beyond.isEmpty {
            throw StageError(.badInput, file: file, "NICs numbered \(maximumNICs) or above (\(beyond.sorted().prefix(3).joined(separator: ", "))): VMware has ethernet0 to ethernet\(maximumNICs - 1)")
        }
        return found
    }
}
