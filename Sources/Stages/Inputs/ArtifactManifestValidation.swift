import Foundation

extension ArtifactManifest {
    /// `source_format` values of the schema, with the qemu block driver that reads each.
    public static let qemuDrivers: [String: String] = [
        "vmdk": "vmdk", "qcow2": "qcow2", "raw": "raw", "vhd": "vpc", "vhdx": "vhdx", "vdi": "vdi",
    ]
    static let firmwares: Set<String> = ["bios", "uefi", "unknown"]
    static let diskTypes: Set<String> = ["boot", "data", "unknown"]
    static let osHints: Set<String> = ["linux", "windows", "unknown"]

    /// Checks the rules of the v1.0 schema that need no file system. The first problem
    /// found is thrown; its message starts with the JSON path of the offending value.
    ///
    /// Rules for values that drive the conversion are errors (version, disks, ids, formats,
    /// sizes, paths, checksums, firmware, MACs). Unknown values of informational fields
    /// (`disk_type`, `os_hint`) are only reported by `advisoryFacts`, so a cosmetic
    /// difference in a newer exporter cannot stop a migration.
    public func validate(file: String) throws {
        func fail(_ path: String, _ message: String) -> StageError {
            StageError(.badInput, file: file, "\(path): \(message)")
        }
        guard Self.supportedVersions.contains(manifestVersion) else {
            throw fail("manifest_version", "unsupported version '\(manifestVersion)' (supported: \(Self.supportedVersions.sorted().joined(separator: ", ")))")
        }
        if let vm {
            if let cpu = vm.cpu, cpu < 0 { throw fail("vm.cpu", "must be 0 or more (got \(cpu))") }
            if let memGB = vm.memGB, memGB < 0 || memGB > Int.max / 1024 {
                throw fail("vm.mem_gb", "must be between 0 and \(Int.max / 1024) (got \(memGB))")
            }
            if let firmware = vm.firmware, !Self.firmwares.contains(firmware) {
                throw fail("vm.firmware", "must be one of bios, uefi, unknown (got '\(firmware)')")
            }
        }
        guard !disks.isEmpty else {
            throw fail("disks", "must list at least one disk")
        }
        var firstIndexOfID: [String: Int] = [:]
        for (index, disk) in disks.enumerated() {
            let at = "disks[\(index)]"
            guard Self.isValidID(disk.id) else {
                throw fail("\(at).id", "'\(disk.id)' must be non-empty and contain only letters, digits, '_' and '-'")
            }
            if let first = firstIndexOfID[disk.id] {
                throw fail("\(at).id", "'\(disk.id)' is already the id of disks[\(first)]; disk ids must be unique")
            }
            firstIndexOfID[disk.id] = index
            guard Self.qemuDrivers[disk.sourceFormat] != nil else {
                throw fail("\(at).source_format", "must be one of \(Self.qemuDrivers.keys.sorted().joined(separator: ", ")) (got '\(disk.sourceFormat)')")
            }
            guard disk.bytes >= 0 else {
                throw fail("\(at).bytes", "must be 0 or more (got \(disk.bytes))")
            }
            guard disk.localPath.hasPrefix("/") else {
                throw fail("\(at).local_path", "must be an absolute path (got '\(disk.localPath)')")
            }
            guard !disk.localPath.contains("\0") else {
                throw fail("\(at).local_path", "contains a NUL character")
            }
            if let checksum = disk.checksum, !Self.isValidChecksum(checksum) {
                throw fail("\(at).checksum", "must be 'sha256:' followed by 64 lowercase hex digits (got '\(checksum)')")
            }
            if let hint = disk.bootOrderHint, hint < 0 {
                throw fail("\(at).boot_order_hint", "must be 0 or more (got \(hint))")
            }
        }
        for (index, nic) in (nics ?? []).enumerated() {
            if let mac = nic.mac, !Self.isValidMAC(mac) {
                throw fail("nics[\(index)].mac", "'\(mac)' is not a MAC address (six hex pairs separated by ':' or '-')")
            }
        }
    }

    /// Facts about values the schema constrains but that do not affect the conversion.
    var advisoryFacts: [String] {
        var facts: [String] = []
        if let hint = vm?.osHint, !Self.osHints.contains(hint) {
            facts.append("warning: manifest vm.os_hint '\(hint)' is not linux, windows or unknown; the guest OS is found by inspection")
        }
        for (index, disk) in disks.enumerated() {
            if let type = disk.diskType, !Self.diskTypes.contains(type) {
                facts.append("warning: manifest disks[\(index)].disk_type '\(type)' is not boot, data or unknown (informational only)")
            }
        }
        if let cpu = vm?.cpu, cpu == 0 { facts.append("manifest vm.cpu is 0: treated as not given") }
        if let memGB = vm?.memGB, memGB == 0 { facts.append("manifest vm.mem_gb is 0: treated as not given") }
        return facts
    }

    /// `^[a-zA-Z0-9_-]+$`
    static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && id.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII && (CharacterSet.alphanumerics.contains(scalar) || scalar == "_" || scalar == "-")
        }
    }

    /// `^sha256:[a-f0-9]{64}$`
    static func isValidChecksum(_ checksum: String) -> Bool {
        guard checksum.hasPrefix("sha256:") else { return false }
        let hex = checksum.utf8.dropFirst("sha256:".utf8.count)
        return hex.count == 64 && hex.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// `^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$`
    static func isValidMAC(_ mac: String) -> Bool {
        let bytes = Array(mac.utf8)
        guard bytes.count == 17 else { return false }
        for (offset, byte) in bytes.enumerated() {
            if offset % 3 == 2 {
                guard byte == UInt8(ascii: ":") || byte == UInt8(ascii: "-") else { return false }
            } else {
                guard (0x30...0x39).contains(byte) || (0x61...0x66).contains(byte) || (0x41...0x46).contains(byte) else { return false }
            }
        }
        return true
    }

    /// Lowercase, colon-separated, as libvirt writes MACs.
    static func canonicalMAC(_ mac: String) -> String {
        mac.lowercased().replacingOccurrences(of: "-", with: ":")
    }
}
