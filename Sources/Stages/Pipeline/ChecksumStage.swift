import Foundation

/// Writes `SHA256SUMS` for everything that will be published (disks, domain.xml,
/// metadata.json), from the SHA-256 the runner recorded when each output was committed,
/// so the multi-gigabyte disks are not read again.
public struct ChecksumStage: PipelineStage {
    public let name = StageName.checksum
    public init() {}

    public func skipReason(in context: StageContext) -> String? {
        context.options.checksum ? nil : "checksum: false"
    }

    public func run(in context: StageContext) async throws -> StageOutputs {
        let vm = try context.vmDescription()
        let target = try StageJSON.read(PublicationTarget.self, from: context.recordedOutput(PublicationTarget.fileName))
        let layout = PublishedLayout(vm: vm, options: context.options, directory: URL(fileURLWithPath: target.directory))
        var entries: [ChecksumFile.Entry] = []
        for disk in vm.disksInBootOrder {
            let name = StageFiles.convertedDisk(diskID: disk.id, format: context.options.outFormat)
            entries.append(ChecksumFile.Entry(name: layout.diskFileName(diskID: disk.id), sha256: try digest(of: name, in: context)))
        }
        for name in [StageFiles.domainXML, StageFiles.metadata] where context.recorded[name] != nil {
            entries.append(ChecksumFile.Entry(name: name, sha256: try digest(of: name, in: context)))
        }
        let output = context.newOutput(named: StageFiles.checksums)
        try ChecksumFile(entries: entries).write(to: output)
        return StageOutputs(files: [StageFiles.checksums: output], detail: "\(entries.count) files")
    }

    private func digest(of name: String, in context: StageContext) throws -> String {
        if let known = context.recordedSHA256[name] { return known }
        return try FileDigest.sha256(of: context.recordedOutput(name))
    }
}
