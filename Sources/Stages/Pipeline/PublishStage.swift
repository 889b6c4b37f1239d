import Foundation

/// Moves the outputs into `output_dir/<vm>/` atomically (see `OutputPublisher`).
public struct PublishStage: PipelineStage {
    /// Artifact name under which the published directory is recorded.
    public static let directoryArtifact = "published-directory"
    public let name = StageName.publish
    public init() {}

    public func skipReason(in context: StageContext) -> String? { nil }

    public func run(in context: StageContext) async throws -> StageOutputs {
        let vm = try context.vmDescription()
        let target = try StageJSON.read(PublicationTarget.self, from: context.recordedOutput(PublicationTarget.fileName))
        let directory = URL(fileURLWithPath: target.directory)
        let layout = PublishedLayout(vm: vm, options: context.options, directory: directory)
        var files: [(artifact: String, file: OutputPublisher.File)] = []
        for disk in vm.disksInBootOrder {
            let name = StageFiles.convertedDisk(diskID: disk.id, format: context.options.outFormat)
            files.append((name, .init(name: layout.diskFileName(diskID: disk.id), source: try context.recordedOutput(name))))
        }
        for name in [StageFiles.domainXML, StageFiles.metadata, StageFiles.checksums] {
            if let url = context.recorded[name] { files.append((name, .init(name: name, source: url))) }
        }
        let published = try OutputPublisher(outputDirectory: context.outputRoot)
            .publish(files.map(\.file), into: directory, jobID: context.jobID)
        var recorded = [Self.directoryArtifact: published]
        for entry in files { recorded[entry.artifact] = published.appendingPathComponent(entry.file.name) }
        return StageOutputs(published: recorded, detail: published.path)
    }
}
