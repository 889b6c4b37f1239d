import Foundation

/// The one entry point the pipeline calls to learn what a source holds: the VM and its
/// disks, each disk already validated with `InputProbe.inspectImage`.
public enum SourceReader {
    /// `manifestAllowedDirectories`: where an Artifact Manifest's disks may be besides its own directory.
    public static func describe(source: URL, kind: InputKind, scratchDirectory: URL,
                                manifestAllowedDirectories: [String] = []) async throws -> VMDescription {
        try await read(source: source, kind: kind, scratchDirectory: scratchDirectory,
                       manifestAllowedDirectories: manifestAllowedDirectories).description
    }

    /// As `describe`, plus the facts worth journaling (missing manifest, payload chosen…).
    ///
    /// Every error names the dropped file: a problem in one of its disks (an OVA member, an OVF
    /// or manifest disk) is reported as that file's, with the disk named in the message.
    public static func read(source: URL, kind: InputKind, scratchDirectory: URL,
                            manifestAllowedDirectories: [String] = []) async throws -> SourceReading {
        var reading: SourceReading
        do {
            reading = try await readDisks(source: source, kind: kind, scratchDirectory: scratchDirectory,
                                          manifestAllowedDirectories: manifestAllowedDirectories)
        } catch let error as StageError {
            guard let file = error.file, file != source.path else { throw error }
            throw StageError(error.code, file: source.path, "\(file): \(error.message)")
        }
        try VMSettingsLimits.check(reading.description, file: source.path)
        reading.description.name = VMSettingsLimits.printableName(reading.description.name)
        return reading
    }

    private static func readDisks(source: URL, kind: InputKind, scratchDirectory: URL,
                                  manifestAllowedDirectories: [String]) async throws -> SourceReading {
        var reading: SourceReading
        switch kind {
        case .vmdk, .vhd, .vhdx, .raw, .qcow2:
            let locator = DiskLocator(path: source.path, format: qemuFormat(of: kind))
            let name = source.deletingPathExtension().lastPathComponent
            reading = SourceReading(description: VMDescription(name: name, disks: [SourceDisk(id: "disk0", locator: locator, bootOrderHint: 0)],
                                                               origin: "disk"))
        case .ova:
            reading = try OVAReader.read(source)
        case .ovf:
            reading = try OVFDirectoryReader.read(source)
        case .vmx:
            reading = try VMXDirectoryReader.read(source)
        case .ami:
            reading = try await AMIReader.read(source, scratchDirectory: scratchDirectory)
        case .hyperv:
            reading = try await HyperVExportReader.read(source, scratchDirectory: scratchDirectory)
        case .manifest:
            // The manifest reader checks each disk itself (checksum first, then content
            // against the declared format, including vdi, which bare inputs never are).
            return try await ArtifactManifestReader.read(source, allowedDirectories: manifestAllowedDirectories)
        }
        try VMSettingsLimits.checkDisks(reading.description.disks, file: source.path)
        for index in reading.description.disks.indices {
            let disk = reading.description.disks[index]
            let info = try await InputProbe.inspectImage(disk.locator)
            reading.description.disks[index].virtualSize = info.virtualSize
            reading.description.disks[index].identity = info.identity
            var fact = "disk \(disk.id): \(info.format)"
            if let createType = info.createType { fact += " (\(createType))" }
            if let backing = info.backingFile { fact += ", a snapshot of \(backing) (flattened to its newest state)" }
            fact += ", virtual size \(info.virtualSize) bytes, stored \(info.storedSize) bytes"
            reading.facts.append(fact)
        }
        return reading
    }

    static func qemuFormat(of kind: InputKind) -> String {
        switch kind {
        case .vhd: "vpc"
        default: kind.rawValue
        }
    }
}

/// The source reader runs in a child process and answers in JSON (`IsolatedSourceReader`).
/// Written by hand: synthesis only works in the file that declares the type.
extension SourceReading: Codable {
    private enum CodingKeys: String, CodingKey {
        case description, facts
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(description: try container.decode(VMDescription.self, forKey: .description),
                  facts: try container.decode([String].self, forKey: .facts))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(description, forKey: .description)
        try container.encode(facts, forKey: .facts)
    }
}

/// What a source may declare for the VM: numbers a hypervisor can honour, a name that can
/// stand in domain.xml and in a directory name. A crafted OVF or manifest with Int.max
/// vCPUs would otherwise publish a domain libvirt refuses.
enum VMSettingsLimits {
    /// QEMU's q35 machine takes at most 1024 vCPUs (with x2APIC); no export has more.
    static let maximumVCPUs = 1024
    /// 16 TiB, in MiB: above any host this product converts for.
    static let maximumMemoryMiB = 16 << 20

    static func check(_ vm: VMDescription, file: String) throws {
        if let vcpus = vm.vcpus, !(1...maximumVCPUs).contains(vcpus) {
            throw StageError(.badInput, file: file, "declares \(vcpus) vCPUs; a KVM guest has 1 to \(maximumVCPUs)")
        }
        if let memory = vm.memoryMiB, !(1...maximumMemoryMiB).contains(memory) {
            throw StageError(.badInput, file: file, "declares \(memory) MiB of memory; a KVM guest has 1 MiB to 16 TiB")
        }
    }

    /// No VM has more disks: 4 SCSI controllers of 64 targets, vSphere's largest layout.
    static let maximumDisks = 256

    /// A descriptor listing thousands of disks, or the same file many times, would multiply
    /// one dropped file into hours of copying and gigabytes of output.
    static func checkDisks(_ disks: [SourceDisk], file: String) throws {
        guard disks.count <= maximumDisks else {
            throw StageError(.badInput, file: file, "lists \(disks.count) disks; a VM has at most \(maximumDisks)")
        }
        var seen: [DiskLocator: String] = [:]
        for disk in disks {
            if let first = seen[disk.locator] {
                throw StageError(.badInput, file: file, "disks \(first) and \(disk.id) are the same file (\(disk.locator.path))")
            }
            seen[disk.locator] = disk.id
        }
    }

    /// The name with control characters replaced (a newline in a dropped file's name must not
    /// reach domain.xml, a directory name or a log line).
    static func printableName(_ name: String) -> String {
        let scalars = name.unicodeScalars.map { scalar -> Unicode.Scalar in
            scalar.properties.generalCategory == .control || scalar.properties.generalCategory == .format ? "_" : scalar
        }
        let cleaned = String(String.UnicodeScalarView(scalars)).trimmingCharacters(in: .whitespaces)
        return cleaned.isEmpty ? "vm" : cleaned
    }
}
