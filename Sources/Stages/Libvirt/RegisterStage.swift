import Foundation

/// Defines the published VM in libvirt (`libvirt_integration: true`), after publish.
///
/// The domain is defined from the published domain.xml with a UUID derived from the job
/// (see `DomainIdentity`), so the stage is re-entrant: after a crash or a retry it finds
/// the domain with its own UUID and simply defines it again (same name, same UUID: libvirt
/// updates the definition in place). A domain of the same name with another UUID belongs
/// to someone else and is never replaced unless `libvirt_overwrite` is set, and even then
/// not while it runs. Storage of another domain is never deleted.
public struct RegisterStage: PipelineStage {
    public let name = StageName.register
    let virshExecutable: String

    public init(virshExecutable: String = "virsh") {
        self.virshExecutable = virshExecutable
    }

    public func skipReason(in context: StageContext) -> String? {
        if !context.options.libvirtIntegration { return "libvirt_integration: false" }
        if context.recorded[StageFiles.domainXML] == nil { return "emit_domain_xml: false, so there is no domain.xml to define" }
        return nil
    }

    public func run(in context: StageContext) async throws -> StageOutputs {
        let options = context.options
        let publishedXML = try context.recordedOutput(StageFiles.domainXML)
        let publishedDirectory = try context.recordedOutput(PublishStage.directoryArtifact)
        if let conflict = options.libvirtNetworkConflict {
            throw StageError(.badInput, file: publishedXML.path, conflict)
        }
        let definition = try DomainDefinition(xml: String(contentsOf: publishedXML, encoding: .utf8), file: publishedXML.path)
        guard let domainName = definition.name, !domainName.isEmpty else {
            throw StageError(.badInput, file: publishedXML.path, "the domain definition has no <name>")
        }
        let uuid = try definition.uuid ?? DomainIdentity.uuid(
            jobID: context.jobID, publishedDirectory: publishedDirectory.path,
            publishStartedAt: context.stageHistory.last { $0.name == StageName.publish.rawValue }?.startedAt)
        let virsh = Virsh(uri: options.libvirtURI, domainName: domainName, subjectFile: publishedXML.path,
                          executable: virshExecutable)

        let existing = try await virsh.domains()
        let ours = existing.first { $0.uuid == uuid }
        if let ours, ours.name != domainName {
            throw virsh.failure("this job's domain (UUID \(uuid)) exists under another name, '\(ours.name)'; "
                                + "rename it back or undefine it, then retry")
        }
        if ours == nil, let foreign = existing.first(where: { $0.name == domainName }) {
            try await replaceForeign(foreign, virsh: virsh, options: options)
        }

        definition.setUUID(uuid)
        if let bridge = options.libvirtBridge {
            definition.attachInterfaces(toBridge: bridge)
        } else {
            definition.attachInterfaces(toNetwork: options.libvirtNetwork)
        }
        var volumes: [LibvirtRegistration.Volume] = []
        if let pool = options.libvirtPool {
            // A running domain of ours was fully defined earlier (volumes are imported
            // before define); its disks are in use and must not be uploaded again.
            var running = false
            if ours != nil { running = try await virsh.state(ofDomain: domainName) != "shut off" }
            volumes = try await importDisks(of: definition, into: pool, uuid: uuid, virsh: virsh, reuse: running)
            definition.useVolumes(Dictionary(volumes.map { ($0.importedFrom, $0.name) }) { first, _ in first }, pool: pool)
        }

        let definedXML = context.newOutput(named: Self.definedXMLName)
        try DurableFile.write(Data(definition.xmlString.utf8), to: definedXML)
        try await virsh.define(xmlFile: definedXML)
        try await virsh.setAutostart(options.libvirtAutostart, domain: domainName)
        guard try await virsh.domains().contains(Virsh.DomainEntry(uuid: uuid, name: domainName)) else {
            throw virsh.failure("`virsh define` succeeded but no domain '\(domainName)' with UUID \(uuid) is listed")
        }

        let registration = LibvirtRegistration(
            uri: options.libvirtURI, domain: domainName, uuid: uuid, autostart: options.libvirtAutostart,
            network: options.libvirtBridge == nil ? options.libvirtNetwork : nil, bridge: options.libvirtBridge,
            volumes: volumes)
        let record = try write(registration, into: publishedDirectory)
        let placement = options.libvirtPool.map { "disks in pool '\($0)'" } ?? "disks are the published files"
        return StageOutputs(
            files: [Self.definedXMLName: definedXML],
            published: [LibvirtRegistration.fileName: record],
            detail: "domain '\(domainName)' UUID \(uuid) defined at \(options.libvirtURI); \(placement)"
                + (options.libvirtAutostart ? "; autostart on" : ""))
    }

    /// Name of the exact definition given to libvirt, kept in the journal.
    public static let definedXMLName = "libvirt-domain.xml"

    private func replaceForeign(_ foreign: Virsh.DomainEntry, virsh: Virsh, options: ConversionOptions) async throws {
        guard options.libvirtOverwrite else {
            throw virsh.failure("a domain named '\(foreign.name)' already exists (UUID \(foreign.uuid)) and was not defined "
                                + "by this job; it is left untouched. Choose another vm_name, or set libvirt_overwrite: true "
                                + "to replace its definition", code: .conflict)
        }
        let state = try await virsh.state(ofDomain: foreign.name)
        guard state == "shut off" else {
            throw virsh.failure("a domain named '\(foreign.name)' (UUID \(foreign.uuid)) exists and is \(state); "
                                + "libvirt_overwrite never replaces a domain that is not shut off", code: .conflict)
        }
        try await virsh.undefine(foreign.name)
    }

    /// Imports each published disk the definition names into `pool` as a volume of this
    /// job (see `VolumeNaming`): an existing one is left from an interrupted attempt and
    /// is replaced, unless `reuse` says the domain is already using it.
    private func importDisks(of definition: DomainDefinition, into pool: String, uuid: String, virsh: Virsh,
                             reuse: Bool) async throws -> [LibvirtRegistration.Volume] {
        try await virsh.requireActivePool(pool)
        let present = try await virsh.volumeNames(inPool: pool)
        var volumes: [LibvirtRegistration.Volume] = []
        for file in definition.diskFiles {
            let source = URL(fileURLWithPath: file)
            let volume = VolumeNaming.name(forPublishedFile: source.lastPathComponent, uuid: uuid)
            if !(reuse && present.contains(volume)) {
                if present.contains(volume) { try await virsh.deleteVolume(volume, pool: pool) }
                try await virsh.importVolume(volume, pool: pool, from: source)
            }
            volumes.append(.init(pool: pool, name: volume, path: try await virsh.volumePath(volume, pool: pool),
                                 importedFrom: file))
        }
        return volumes
    }

    /// `libvirt.json` beside the published files: written whole under a temporary name and
    /// renamed, so a reader never sees half of it and a rerun simply replaces it.
    private func write(_ registration: LibvirtRegistration, into directory: URL) throws -> URL {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let final = directory.appendingPathComponent(LibvirtRegistration.fileName)
        let temporary = directory.appendingPathComponent("." + LibvirtRegistration.fileName + ".partial")
        let data: Data
        do {
            data = try encoder.encode(registration)
        } catch {
            throw StageError(.ioFailed, file: final.path, "cannot encode: \(error)")
        }
        try DurableFile.write(data, to: temporary)
        try DurableFile.renameReplacing(from: temporary, to: final)
        try DurableFile.fsyncDirectory(directory)
        return final
    }
}
