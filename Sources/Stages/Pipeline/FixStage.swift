import Foundation

/// Guest OS fixes on a qcow2 overlay over each source disk (the source is never written):
/// one libguestfs appliance inspects the guest and applies the Linux or Windows fixes;
/// convert then copies overlay + source in a single pass.
///
/// The fix runs in a child process (`IsolatedGuestFixer`): a libguestfs crash fails this
/// stage (retried by the policy), and a shutdown stops a running fix at once. A stage
/// that was stopped or crashed leaves only `.partial` overlays, which the runner removes;
/// the next attempt builds fresh overlays over the untouched sources and fixes from the start.
public struct FixStage: PipelineStage {
    public let name = StageName.fix
    let fixer: IsolatedGuestFixer?
    let qemuImg: QemuImg

    /// - Parameter fixer: the child to run; nil finds it when the stage runs (`IsolatedGuestFixer.locate`).
    public init(fixer: IsolatedGuestFixer? = nil, qemuImg: QemuImg = QemuImg()) {
        self.fixer = fixer
        self.qemuImg = qemuImg
    }

    public func skipReason(in context: StageContext) -> String? {
        if let reason = GuestOverlays.skipReason(in: context) { return reason }
        if context.options.useV2V { return "use_v2v: true (virt-v2v converts the guest in stage v2v)" }
        return nil
    }

    public func run(in context: StageContext) async throws -> StageOutputs {
        let fixer = try self.fixer ?? IsolatedGuestFixer.locate()
        let vm = try StageJSON.read(VMDescription.self, from: context.recordedOutput(StageFiles.vm))
        var options = context.options
        if context.kind == .manifest {
            options = try ArtifactManifest.load(from: context.source).restricting(options)
        }
        let overlays = try await GuestOverlays.make(for: vm, in: context, qemuImg: qemuImg)
        var files = overlays.files
        let fix = { try await fixer.fix(disks: overlays.paths.map { ($0, "qcow2") }, options: options, identifier: "job-\(context.jobID)",
                                        request: context.newOutput(named: "fix-request.json"),
                                        answer: context.newOutput(named: "fix-answer.json")) }
        if options.dryRun {
            // A preflight: the fix's refusal is the verdict, and the overlays are measured
            // while their sources are still pinned.
            let began = ContinuousClock.now
            let result: Result<GuestFixReport, StageError>
            do {
                result = .success(try await fix())
            } catch let error as StageError where PreflightStep.isVerdict(error) && !Task.isCancelled {
                result = .failure(error)
            }
            let outputs = try await PreflightStep(qemuImg: qemuImg).finish(vm: vm, overlays: overlays, fix: result,
                                                                          fixSeconds: PreflightStep.seconds(since: began), in: context)
            withExtendedLifetime(overlays.sources) {}
            return outputs
        }
        let report = try await fix()
        withExtendedLifetime(overlays.sources) {}
        let reportFile = context.newOutput(named: StageFiles.fixReport)
        try StageJSON.write(report, to: reportFile)
        files[StageFiles.fixReport] = reportFile

        if let index = BootDisk.index(ofRootDevice: report.inspection.rootDevice), vm.disks.indices.contains(index) {
            let bootFile = context.newOutput(named: BootDisk.fileName)
            try StageJSON.write(BootDisk(diskID: vm.disks[index].id, rootDevice: report.inspection.rootDevice), to: bootFile)
            files[BootDisk.fileName] = bootFile
        }
        let inspection = report.inspection
        let changes = report.windows.map { windows in
            "\(windows.registryChanges.count) registry change(s), \(windows.filesCopied.count) file(s) copied, disk bus \(windows.diskBus)"
        } ?? "\(report.changes.count) change(s)"
        // A guest whose boot the fix could not promise says so first, in the stage's journal line.
        let verdict = report.bootResult.map { "\($0) — " } ?? ""
        return StageOutputs(files: files, detail: verdict + "\(inspection.distro) \(inspection.majorVersion).\(inspection.minorVersion) "
                                + "(\(inspection.arch)), root \(inspection.rootDevice): \(changes)"
                                + (report.skipped.isEmpty ? "" : ", skipped: " + report.skipped.map { "\($0.area) (\($0.reason))" }.joined(separator: "; ")))
    }
}

/// The disk inspection found the operating system on: it boots, whatever the source's order.
public struct BootDisk: Codable, Sendable, Equatable {
    public static let fileName = "boot-disk.json"
    public var diskID: String
    public var rootDevice: String

    /// libguestfs names the job's disks /dev/sda, /dev/sdb… in the order they were added.
    static func index(ofRootDevice device: String) -> Int? {
        guard device.hasPrefix("/dev/sd") || device.hasPrefix("/dev/vd"),
              let letter = device.dropFirst("/dev/sd".count).first, let value = letter.asciiValue,
              value >= UInt8(ascii: "a"), value <= UInt8(ascii: "z") else { return nil }
        return Int(value - UInt8(ascii: "a"))
    }
}

extension StageContext {
    /// The VM as the source describes it, with the boot disk inspection found moved first.
    public func vmDescription() throws -> VMDescription {
        var vm = try StageJSON.read(VMDescription.self, from: recordedOutput(StageFiles.vm))
        if let bootFile = recorded[BootDisk.fileName],
           let boot = try? StageJSON.read(BootDisk.self, from: bootFile),
           let index = vm.disks.firstIndex(where: { $0.id == boot.diskID }) {
            for other in vm.disks.indices { vm.disks[other].bootOrderHint = other == index ? 0 : 1 + other }
        }
        return vm
    }
}
