import Foundation
import SystemSupport

/// Writes `domain.xml` (libvirt) and `metadata.json` for the converted VM.
public struct EmitStage: PipelineStage {
    public let name = StageName.emit
    let qemuImg: QemuImg
    let toolVersion: String

    public init(qemuImg: QemuImg = QemuImg(), toolVersion: String) {
        self.qemuImg = qemuImg
        self.toolVersion = toolVersion
    }

    public func skipReason(in context: StageContext) -> String? { nil }

    public func run(in context: StageContext) async throws -> StageOutputs {
        let vm = try context.vmDescription()
        let directory = try OutputPublisher(outputDirectory: context.outputRoot)
            .reserve(vmName: context.options.vmName ?? vm.name, jobID: context.jobID)
        let layout = PublishedLayout(vm: vm, options: context.options, directory: directory)
        var files: [String: URL] = [:]

        let targetFile = context.newOutput(named: PublicationTarget.fileName)
        try StageJSON.write(PublicationTarget(directory: directory.path), to: targetFile)
        files[PublicationTarget.fileName] = targetFile

        // One UUID for domain.xml and metadata.json; `register` defines exactly this domain.
        let uuid = UUID().uuidString.lowercased()
        let fixReport = context.recorded[StageFiles.fixReport].flatMap { try? StageJSON.read(GuestFixReport.self, from: $0) }
        var platform = GuestPlatform.from(fixReport, options: context.options)
        var notes: [String] = []
        // Linux: the firmware by precedence (vm_uefi, the source description, the disk).
        var firmwareChoice: (decision: FirmwareDecision, warning: String?)?
        if let fixReport, fixReport.windows == nil {
            let choice = FirmwareChoice.choose(vmUEFI: context.options.vmUEFI, source: vm.firmware, disk: fixReport.firmware)
            platform.detectedFirmware = choice.decision.firmware == .unknown ? nil : choice.decision.firmware
            if let warning = choice.warning { notes.append(warning) }
            firmwareChoice = choice
        }
        if let forced = context.options.vmUEFI, let detected = platform.detectedFirmware, forced != (detected == .uefi) {
            // The operator's setting wins, but a firmware the disk cannot boot with is worth saying.
            notes.append("vm_uefi: \(forced) overrides the guest, whose disk boots through \(detected.rawValue): it may not boot")
        }
        if context.options.emitDomainXML {
            let disks = vm.disksInBootOrder.map {
                DomainXMLWriter.Disk(path: layout.diskPath(diskID: $0.id).path, format: context.options.outFormat)
            }
            var named = vm
            named.name = layout.vmName
            let xml = try DomainXMLWriter().render(vm: named, disks: disks, options: context.options, uuid: uuid,
                                                   platform: platform)
            let xmlFile = context.newOutput(named: StageFiles.domainXML)
            try DurableFile.write(Data(xml.utf8), to: xmlFile)
            files[StageFiles.domainXML] = xmlFile
        }

        var metadata = try await metadataDocument(vm: vm, layout: layout, context: context, fixReport: fixReport)
        if let fixReport, fixReport.windows == nil {
            metadata.bootFirmware = firmwareChoice?.decision
            metadata.bootCheck = fixReport.bootCheck
            metadata.bootNotEnsured = fixReport.bootNotEnsuredReasons
            metadata.result = fixReport.bootNotEnsuredReasons.isEmpty ? "converted" : GuestFixReport.bootNotEnsuredResult
            if let warning = firmwareChoice?.warning { metadata.fixWarnings = (metadata.fixWarnings ?? []) + [warning] }
        }
        if context.options.emitDomainXML { metadata.domain = .init(name: layout.vmName, uuid: uuid) }
        let metadataFile = context.newOutput(named: StageFiles.metadata)
        try MetadataWriter.write(metadata, to: metadataFile)
        files[StageFiles.metadata] = metadataFile
        return StageOutputs(files: files, detail: (["for \(directory.path)"] + notes).joined(separator: "; "))
    }

    private func metadataDocument(vm: VMDescription, layout: PublishedLayout, context: StageContext,
                                  fixReport: GuestFixReport?) async throws -> ConversionMetadata {
        let probe = try StageJSON.read(ProbeReport.self, from: context.recordedOutput(StageFiles.probe))
        var outputs: [ConversionMetadata.Output] = []
        for disk in vm.disksInBootOrder {
            let name = StageFiles.convertedDisk(diskID: disk.id, format: context.options.outFormat)
            let url = try context.recordedOutput(name)
            let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.uint64Value ?? 0
            outputs.append(ConversionMetadata.Output(
                name: layout.diskFileName(diskID: disk.id), path: layout.diskPath(diskID: disk.id).path,
                format: context.options.outFormat, size: size, sha256: context.recordedSHA256[name],
                virtualSize: disk.virtualSize))
        }
        let stages = context.stageHistory
        let sourceFormat = vm.disks.first?.locator.format ?? probe.kind.rawValue
        let sourceDigest = context.recorded[SourceDigestFile.name].flatMap { try? StageJSON.read(SourceDigestFile.self, from: $0) }
        var metadata = ConversionMetadata(
            createdAt: Date(),
            tool: .init(version: toolVersion, qemuImgVersion: (try? await qemuImg.version()) ?? "unknown",
                        libguestfsVersion: nil, guestConverter: guestConverter(in: context, fixed: fixReport != nil)),
            source: .init(path: context.source.path, kind: probe.kind, format: sourceFormat, size: probe.sizeBytes,
                          sha256: sourceDigest?.sha256,
                          identity: Self.identity(of: context.source), sparseSHA256: sourceDigest?.sparseSHA256),
            vm: .init(vm),
            inspection: fixReport.flatMap { JSONValue.object(encoding: $0.inspection) },
            fixes: fixReport?.changes ?? [],
            outputs: outputs,
            stages: stages,
            windows: fixReport?.windows.flatMap { JSONValue.object(encoding: $0) })
        metadata.fixSkipped = fixReport?.skipped
        metadata.fixWarnings = fixReport?.warnings
        metadata.fixSteps = fixReport?.durations
        return metadata
    }

    /// virt-v2v when stage `v2v` ran (its report names the version), hyper2kvm's own fixer
    /// when `fix` did, nobody when the guest was copied as it was.
    func guestConverter(in context: StageContext, fixed: Bool) -> ConversionMetadata.GuestConverter? {
        if let report = context.recorded[V2VStage.reportFile].flatMap({ try? StageJSON.read(V2VReport.self, from: $0) }) {
            return .init(name: report.tool, version: report.version)
        }
        return fixed ? .init(name: "hyper2kvm", version: toolVersion) : nil
    }
}

extension EmitStage {
    static func identity(of source: URL) -> ConversionMetadata.SourceIdentity? {
        var info = stat()
        guard stat(source.path, &info) == 0 else { return nil }
        return .init(device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: UInt64(info.st_size),
                     mtime: Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9)
    }
}

/// The source file's digest (`SourceDigest`), computed while convert reads it (the second core is idle then).
public struct SourceDigestFile: Codable, Sendable {
    public static let name = "source-sha256.json"
    /// Plain SHA-256, in files recorded by earlier versions (a job resumed across an upgrade).
    public var sha256: String?
    /// `SparseDigest` of the source.
    public var sparseSHA256: String?

    public init(sha256: String) { self.sha256 = sha256 }

    public init(_ digest: SourceDigest) { sparseSHA256 = digest.sparseSHA256 }

    /// See ``SourceDigest/identityKey``.
    public var identityKey: String? {
        get throws {
            if let sparseSHA256 { return try SourceDigest(sparseSHA256: sparseSHA256).identityKey }
            return sha256
        }
    }
}

extension JSONValue {
    /// A Codable value as a free-form JSON object (nil if it is not an object).
    static func object<T: Encodable>(encoding value: T) -> [String: JSONValue]? {
        // snake_case like every other key of the document.
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        guard case .object(let fields)? = try? JSONValue(encoding: value, with: encoder) else { return nil }
        return fields
    }
}
