import Foundation

/// Identifies the input by content and, for a bare disk image, describes the VM.
public struct ProbeStage: PipelineStage {
    public let name = StageName.probe
    public init() {}

    public func skipReason(in context: StageContext) -> String? { nil }

    public func run(in context: StageContext) async throws -> StageOutputs {
        let kind = try InputProbe.identify(context.source)
        guard kind == context.kind else {
            throw StageError(.badInput, file: context.source.path,
                             "content is \(kind.rawValue), but the job was queued as \(context.kind.rawValue)")
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: context.source.path)[.size] as? NSNumber)?.uint64Value ?? 0
        let probeFile = context.newOutput(named: StageFiles.probe)
        try StageJSON.write(ProbeReport(kind: kind, sizeBytes: size), to: probeFile)
        var files = [StageFiles.probe: probeFile]
        if !ExtractStage.archiveKinds.contains(kind) {
            let description = try await SourceReader.describe(source: context.source, kind: kind,
                                                              scratchDirectory: context.workDirectory)
            let vmFile = context.newOutput(named: StageFiles.vm)
            try StageJSON.write(description, to: vmFile)
            files[StageFiles.vm] = vmFile
        }
        return StageOutputs(files: files, detail: "\(kind.rawValue), \(size) bytes")
    }
}

/// Reads archives and descriptors (OVA, OVF, AMI): verifies digests, parses the OVF,
/// and locates the disks (OVA members are read in place, not extracted).
public struct ExtractStage: PipelineStage {
    public static let archiveKinds: Set<InputKind> = [.ova, .ovf, .ami, .manifest]
    public let name = StageName.extract
    public init() {}

    public func skipReason(in context: StageContext) -> String? {
        Self.archiveKinds.contains(context.kind) ? nil : "\(context.kind.rawValue) is a plain disk image: nothing to extract"
    }

    public func run(in context: StageContext) async throws -> StageOutputs {
        let description = try await SourceReader.describe(source: context.source, kind: context.kind,
                                                          scratchDirectory: context.workDirectory,
                                                          manifestAllowedDirectories: context.options.manifestAllowedDirectories)
        let vmFile = context.newOutput(named: StageFiles.vm)
        try StageJSON.write(description, to: vmFile)
        return StageOutputs(files: [StageFiles.vm: vmFile],
                            detail: "\(description.name): \(description.disks.count) disk(s), firmware \(description.firmware.rawValue)")
    }
}
