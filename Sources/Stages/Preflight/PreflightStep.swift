import Foundation
import SystemSupport

/// The fix stage's ending in a preflight (`dry_run: true`): the fix has run on throw-away
/// overlays (or refused the guest); this measures the fixed overlays while their sources
/// are still pinned, judges the verdict and writes the report, both as the stage's output
/// and durably beside where the VM would be published (`<output_dir>/<vm>.preflight.json`),
/// since the job's work directory is removed when it ends.
struct PreflightStep {
    let qemuImg: QemuImg

    /// Errors that are the guest's verdict (the real job would fail with them) rather than a
    /// failure of this run (a crashed appliance, a full disk), which fail the stage as usual:
    /// the input refused, the guest unsupported, or one of the guest's own tools
    /// (update-initramfs, grub) failing inside it, which a conversion hits the same way.
    static func isVerdict(_ error: StageError) -> Bool {
        [.badInput, .unsupportedGuest].contains(error.code) || error.message.contains(StageError.guestToolFailed)
    }

    func finish(vm: VMDescription, overlays: GuestOverlays, fix: Result<GuestFixReport, StageError>,
                fixSeconds: Double, in context: StageContext) async throws -> StageOutputs {
        let options = context.options
        var durations = [GuestFixReport.StepDuration(step: "fix", seconds: fixSeconds)]
        var estimate: PreflightReport.OutputEstimate?
        let report: GuestFixReport?
        let failure: String?
        switch fix {
        case .success(let fixed):
            report = fixed
            failure = nil
            let began = ContinuousClock.now
            estimate = try await measure(vm: vm, overlays: overlays, options: options)
            durations.append(.init(step: "measure", seconds: Self.seconds(since: began)))
        case .failure(let error):
            report = nil
            // The fixer names the overlay it worked on, a scratch file that is gone: name the source.
            let file = error.file.map { $0.hasPrefix(context.workDirectory.path) ? context.source.path : $0 }
            failure = file.map { "\($0): \(error.message)" } ?? error.message
        }
        let firmwareWarning = report.flatMap { $0.windows == nil ? FirmwareChoice.choose(vmUEFI: options.vmUEFI, source: vm.firmware, disk: $0.firmware).warning : nil }
        let verdict = PreflightVerdict.judge(report: report, failure: failure, firmwareWarning: firmwareWarning)
        let preflight = PreflightReport(source: context.source.path, vmName: options.vmName ?? vm.name, verdict: verdict, fix: report,
                                        estimatedOutput: estimate, notRun: [Self.notRun], durations: durations)
        var files = overlays.files
        let reportFile = context.newOutput(named: PreflightReport.fileName)
        try StageJSON.write(preflight, to: reportFile)
        files[PreflightReport.fileName] = reportFile
        if let report {
            let fixFile = context.newOutput(named: StageFiles.fixReport)
            try StageJSON.write(report, to: fixFile)
            files[StageFiles.fixReport] = fixFile
        }
        let published = context.outputRoot.appendingPathComponent(OutputPublisher.directoryName(for: preflight.vmName) + ".preflight.json")
        try publish(preflight, to: published)
        return StageOutputs(files: files, published: [PreflightReport.artifactName: published],
                            detail: "dry run: \(verdict.outcome.rawValue)"
                                + (verdict.reasons.isEmpty ? "" : " (" + verdict.reasons.joined(separator: "; ") + ")")
                                + "; report \(published.path); " + Self.notRun)
    }

    static func seconds(since start: ContinuousClock.Instant) -> Double {
        let parts = (ContinuousClock.now - start).components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }

    static let notRun = "convert, emit, checksum, publish and register are skipped (dry_run: true): nothing is converted or published"

    /// `qemu-img measure` of each fixed overlay (over its pinned source) in the output format,
    /// as the convert stage measures before it copies.
    private func measure(vm: VMDescription, overlays: GuestOverlays, options: ConversionOptions) async throws -> PreflightReport.OutputEstimate {
        let format = options.outFormat == "raw" ? "raw" : "qcow2"
        var disks: [PreflightReport.OutputEstimate.Disk] = []
        for (disk, overlay) in zip(vm.disks, overlays.paths) {
            let measured = try await qemuImg.measure(overlay.path, sourceFormat: "qcow2", outputFormat: format,
                                                     compress: options.compress && format == "qcow2")
            disks.append(.init(id: disk.id, requiredBytes: measured.required, fullyAllocatedBytes: measured.fullyAllocated))
        }
        return PreflightReport.OutputEstimate(format: format, compressed: options.compress && format == "qcow2", disks: disks)
    }

    private func publish(_ report: PreflightReport, to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try DurableWrite.replace(url.path, with: try encoder.encode(report))
        } catch {
            throw StageError(.ioFailed, file: url.path, "cannot write the preflight report: \(error)")
        }
    }
}
