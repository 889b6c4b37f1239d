import Foundation

/// `use_v2v: true`: virt-v2v converts the guest instead of hyper2kvm's own fixer (stage
/// `fix` is then skipped, and this one runs in its place).
///
/// It runs `virt-v2v-in-place` on a qcow2 overlay over each source disk, exactly where
/// `fix` would have written, and `convert` then copies overlay + source in one pass as
/// always. Plain `virt-v2v -i disk|ova|vmx` would open the dropped files itself: its qemu
/// and nbdkit follow a hostile image's backing and data-file names, which is what the
/// pinned sources exist to prevent. It would also copy each disk once more than needed,
/// one disk at a time (virt-v2v 2.2 has no parallel copies), without our space checks or
/// hashing beside the copy. In place on our overlays, virt-v2v sees only descriptors we
/// opened and verified, and writes only the overlays.
///
/// Re-entrant: a run that crashed or was stopped leaves only `.partial` overlays, which
/// the runner removes; the next run builds fresh ones over the untouched sources.
public struct V2VStage: PipelineStage {
    public let name = StageName.v2v
    let tool: VirtV2VInPlace?
    let qemuImg: QemuImg

    /// - Parameter tool: nil finds `virt-v2v-in-place` on PATH when the stage runs.
    public init(tool: VirtV2VInPlace? = nil, qemuImg: QemuImg = QemuImg()) {
        self.tool = tool
        self.qemuImg = qemuImg
    }

    public static let reportFile = "v2v-report.json"

    public func skipReason(in context: StageContext) -> String? {
        if !context.options.useV2V { return "use_v2v: false (hyper2kvm's own fixer converts the guest in stage fix)" }
        return GuestOverlays.skipReason(in: context)
    }

    public func run(in context: StageContext) async throws -> StageOutputs {
        // Checked at start too; here for a host that lost virt-v2v since (a retryable tool failure).
        let tool: VirtV2VInPlace
        switch self.tool.map({ Result<VirtV2VInPlace, VirtV2VInPlace.Missing>.success($0) }) ?? VirtV2VInPlace.locate() {
        case .success(let found): tool = found
        case .failure(let missing): throw StageError(.toolFailed, file: context.source.path, missing.description)
        }
        let vm = try context.vmDescription()
        let overlays = try await GuestOverlays.make(for: vm, in: context, qemuImg: qemuImg)
        var files = overlays.files
        let domainFile = context.newOutput(named: "v2v-input.xml")
        defer { try? FileManager.default.removeItem(at: domainFile) }
        do {
            try Data(V2VInputDomain.render(jobID: context.jobID, vm: vm, overlays: overlays.paths).utf8).write(to: domainFile)
        } catch {
            throw StageError(.ioFailed, file: domainFile.path, "cannot write virt-v2v's input description: \(error)")
        }
        let version = (try? await tool.version()) ?? "unknown"
        var environment: [String: String] = [:]
        // virt-v2v looks for Windows drivers in VIRTIO_WIN; our key names the same thing.
        if let drivers = context.options.virtioWin { environment["VIRTIO_WIN"] = drivers }
        // virt-v2v would outlive a killed daemon and go on writing an overlay nobody uses.
        let supervisor = try IsolatedSourceReader.ownExecutable(for: "supervises virt-v2v",
                                                                environment: ProcessInfo.processInfo.environment)
        let transcript = try await tool.convert(domainXML: domainFile, about: context.source.path,
                                                environment: environment, supervisor: supervisor, progress: context.progress)
        withExtendedLifetime(overlays.sources) {}
        let report = V2VReport(tool: VirtV2VInPlace.toolName, version: version, warnings: transcript.warnings,
                               phases: transcript.stdout.split(separator: "\n").map(String.init).filter { $0.hasPrefix("[") })
        let reportFile = context.newOutput(named: Self.reportFile)
        try StageJSON.write(report, to: reportFile)
        files[Self.reportFile] = reportFile
        let converted = report.phases.first { $0.contains("] Converting ") }
            .map { String($0.drop { $0 != "]" }.dropFirst()).trimmingCharacters(in: .whitespaces) }
        return StageOutputs(files: files, detail: "\(VirtV2VInPlace.toolName) \(version): " + (converted ?? "converted")
                                + (report.warnings.isEmpty ? "" : "; \(report.warnings.count) warning(s): "
                                    + report.warnings.joined(separator: " | ")))
    }
}

/// What the `v2v` stage records: which converter ran, and what it said.
public struct V2VReport: Codable, Sendable, Equatable {
    public var tool: String
    public var version: String
    public var warnings: [String]
    /// virt-v2v's timestamped phase lines, verbatim.
    public var phases: [String]
}

/// The libvirt description virt-v2v reads (`-i libvirtxml`): the overlays, in the VM's
/// disk order, and the firmware when the source declared it. The name is ours (the job),
/// never the source's, so nothing a dropped file says reaches virt-v2v's command line or XML
/// beyond sizes it has already been checked for.
enum V2VInputDomain {
    static func render(jobID: Int64, vm: VMDescription, overlays: [URL]) -> String {
        var domain = MarkupElement("domain", ["type": "kvm"])
        domain.add(MarkupElement("name", text: "hyper2kvm-job-\(jobID)"))
        domain.add(MarkupElement("memory", ["unit": "MiB"], text: String(vm.memoryMiB ?? DomainXMLWriter.defaultMemoryMiB)))
        domain.add(MarkupElement("vcpu", text: String(vm.vcpus ?? DomainXMLWriter.defaultVcpus)))
        var os = MarkupElement("os", children: [MarkupElement("type", text: "hvm")])
        if vm.firmware == .uefi { os.attributes.append(("firmware", "efi")) }
        domain.add(os)
        var devices = MarkupElement("devices")
        for (index, overlay) in overlays.enumerated() {
            devices.add(MarkupElement("disk", ["type": "file", "device": "disk"], children: [
                MarkupElement("driver", ["name": "qemu", "type": "qcow2"]),
                MarkupElement("source", ["file": overlay.path]),
                MarkupElement("target", ["dev": DomainXMLWriter.sataDiskName(index), "bus": "scsi"]),
            ]))
        }
        domain.add(devices)
        return domain.rendered(indent: 0)
    }
}
