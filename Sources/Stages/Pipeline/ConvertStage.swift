import Foundation
import Synchronization

/// Copies each disk once, with qemu-img, into the output format: from the guest-fix
/// overlay when there is one (so fixes and data leave in a single copy), else from the
/// source. Snapshot chains are read through, so the output is always standalone.
public struct ConvertStage: PipelineStage {
    public let name = StageName.convert
    let qemuImg: QemuImg
    /// Disks copied at once; more than the disks' bandwidth allows only adds seeks.
    let parallelDiskCopies: Int

    public init(qemuImg: QemuImg = QemuImg(), parallelDiskCopies: Int = 1) {
        self.qemuImg = qemuImg
        self.parallelDiskCopies = max(1, parallelDiskCopies)
    }

    public func skipReason(in context: StageContext) -> String? { nil }

    public func run(in context: StageContext) async throws -> StageOutputs {
        let vm = try context.vmDescription()
        let format = context.options.outFormat
        // Each source is pinned and checked against qemu's view again: the files may have
        // changed since the probe. The overlay's own header names the source by descriptors
        // of the fix stage's process, so its backing is always given explicitly here.
        var sources: [PinnedImage] = []
        for disk in vm.disks {
            let source = try PinnedImage.open(disk.locator)
            _ = try await source.verifiedByQemu(qemuImg: qemuImg.executable)
            sources.append(source)
        }
        let plans = zip(vm.disks, sources).map { disk, source -> (String, URL, String, String) in
            let overlayName = StageFiles.overlay(diskID: disk.id)
            let name = StageFiles.convertedDisk(diskID: disk.id, format: format)
            if let overlay = context.recorded[overlayName] {
                return (name, context.newOutput(named: name), QemuNode.overlay(overlay.path, over: source.tree).imageSpec, "qcow2")
            }
            return (name, context.newOutput(named: name), source.spec, disk.locator.format)
        }
        let progress = DiskProgress(count: plans.count, report: context.progress)
        // Hash the source while qemu-img reads it: the data is in the page cache and the
        // second core is idle, so the source's SHA-256 for metadata.json costs no extra pass.
        let source = context.source
        let sourceDigest: Task<String, Error>? = context.options.checksum
            ? Task { try await BlockingWork.run("h2k-src-sha256") { try FileDigest.sha256(of: source) } }
            : nil
        var files: [String: URL] = [:]
        var notes: [String] = []
        // Each finished disk is hashed at once, while the next disk copies and the source
        // hash finishes on the other core, instead of after the stage by the runner.
        var outputDigests: [String: Task<String, Error>] = [:]
        func hashWhenChecksummed(_ name: String, _ url: URL) {
            guard context.options.checksum else { return }
            outputDigests[name] = Task { try await BlockingWork.run("h2k-out-sha256") { try FileDigest.sha256(of: url) } }
        }
        if parallelDiskCopies > 1 && plans.count > 1 {
            try await withThrowingTaskGroup(of: (String, URL, String?).self) { group in
                var pending = plans.enumerated().makeIterator()
                func startNext() {
                    guard let (index, plan) = pending.next() else { return }
                    group.addTask {
                        let summary = try await convert(plan, options: context.options) { progress.update(disk: index, $0) }
                        return (plan.0, plan.1, summary.note)
                    }
                }
                for _ in 0..<parallelDiskCopies { startNext() }
                for try await (name, url, note) in group {
                    files[name] = url
                    hashWhenChecksummed(name, url)
                    if let note { notes.append(note) }
                    startNext()
                }
            }
        } else {
            for (index, plan) in plans.enumerated() {
                let summary = try await convert(plan, options: context.options) { progress.update(disk: index, $0) }
                files[plan.0] = plan.1
                hashWhenChecksummed(plan.0, plan.1)
                if let note = summary.note { notes.append(note) }
            }
        }
        withExtendedLifetime(sources) {}
        var sha256: [String: String] = [:]
        for (name, digest) in outputDigests { sha256[name] = try await digest.value }
        if let sourceDigest {
            let digestFile = context.newOutput(named: SourceDigestFile.name)
            try StageJSON.write(SourceDigestFile(sha256: try await sourceDigest.value), to: digestFile)
            files[SourceDigestFile.name] = digestFile
        }
        let compression = context.options.compress ? ", zstd-compressed" : ""
        return StageOutputs(files: files, detail: "\(plans.count) disk(s) to \(format)\(compression)"
                                + (notes.isEmpty ? "" : "; " + notes.joined(separator: "; ")), sha256: sha256)
    }

    private func convert(_ plan: (String, URL, String, String), options: ConversionOptions,
                         progress: @escaping @Sendable (Double) -> Void) async throws -> QemuImg.ConversionSummary {
        try? FileManager.default.removeItem(at: plan.1)
        return try await qemuImg.convert(from: plan.2, sourceFormat: plan.3, to: plan.1, outputFormat: options.outFormat,
                                         compress: options.compress, compressLevel: options.compressLevel,
                                         progress: progress)
    }
}

/// Folds per-disk progress into one job figure.
final class DiskProgress: Sendable {
    private let fractions: Mutex<[Double]>
    private let report: @Sendable (Double) -> Void

    init(count: Int, report: @escaping @Sendable (Double) -> Void) {
        fractions = Mutex(Array(repeating: 0, count: max(count, 1)))
        self.report = report
    }

    func update(disk index: Int, _ fraction: Double) {
        let total = fractions.withLock { values -> Double in
            values[index] = fraction
            return values.reduce(0, +) / Double(values.count)
        }
        report(total)
    }
}
