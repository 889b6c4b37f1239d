import Foundation

/// Identifies the input by content and, for a bare disk image, describes the VM.
/// Both parse untrusted bytes, so both run in a child process (`IsolatedSourceReader`).
public struct ProbeStage: PipelineStage {
    public let name = StageName.probe
    /// nil: the `hyper2kvm` executable is located when the stage runs.
    let reader: IsolatedSourceReader?
    public init() { reader = nil }
    public init(reader: IsolatedSourceReader) { self.reader = reader }

    public func skipReason(in context: StageContext) -> String? { nil }

    public func run(in context: StageContext) async throws -> StageOutputs {
        let reader = try self.reader ?? IsolatedSourceReader.locate()
        let kind = try await reader.identify(context.source)
        guard kind == context.kind else {
            throw StageError(.badInput, file: context.source.path,
                             "content is \(kind.rawValue), but the job was queued as \(context.kind.rawValue)")
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: context.source.path)[.size] as? NSNumber)?.uint64Value ?? 0
        let probeFile = context.newOutput(named: StageFiles.probe)
        try StageJSON.write(ProbeReport(kind: kind, sizeBytes: size), to: probeFile)
        var files = [StageFiles.probe: probeFile]
        if !ExtractStage.archiveKinds.contains(kind) {
            let description = try await reader.read(source: context.source, kind: kind,
                                                    scratchDirectory: context.workDirectory).description
            let vmFile = context.newOutput(named: StageFiles.vm)
            try StageJSON.write(description, to: vmFile)
            files[StageFiles.vm] = vmFile
        }
        return StageOutputs(files: files, detail: "\(kind.rawValue), \(size) bytes")
    }
}

/// Reads archives and descriptors (OVA, OVF, AMI): verifies digests, parses the OVF,
/// and locates the disks (OVA members are read in place, not extracted). In a child
/// process, as the probe.
public struct ExtractStage: PipelineStage {
    public static let archiveKinds: Set<InputKind> = [.ova, .ovf, .ami, .manifest, .vmx, .hyperv]
    public let name = StageName.extract
    let reader: IsolatedSourceReader?
    public init() { reader = nil }
    public init(reader: IsolatedSourceReader) { self.reader = reader }

    public func skipReason(in context: StageContext) -> String? {
        Self.archiveKinds.contains(context.kind) ? nil : "\(context.kind.rawValue) is a plain disk image: nothing to extract"
    }

    public func run(in context: StageContext) async throws -> StageOutputs {
        let reader = try self.reader ?? IsolatedSourceReader.locate()
        let reading = try await reader.read(source: context.source, kind: context.kind,
                                            scratchDirectory: context.workDirectory,
                                            manifestAllowedDirectories: context.options.manifestAllowedDirectories)
        let description = reading.description
        let vmFile = context.newOutput(named: StageFiles.vm)
        try StageJSON.write(description, to: vmFile)
        // The reader's facts (manifest verified, OVF dialect, sections ignored, files not
        // converted…) are journaled with the stage: nothing it passed over goes unsaid.
        let facts = reading.facts.isEmpty ? "" : "; " + reading.facts.joined(separator: "; ")
        return StageOutputs(files: [StageFiles.vm: vmFile],
                            detail: "\(description.name): \(description.disks.count) disk(s), firmware \(description.firmware.rawValue)" + facts)
    }
}
