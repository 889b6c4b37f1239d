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
    /// Space the copies of other jobs in this process are about to take.
    let reservations: SpaceReservations

    public init(qemuImg: QemuImg = QemuImg(), parallelDiskCopies: Int = 1, reservations: SpaceReservations = .shared) {
        self.qemuImg = qemuImg
        self.parallelDiskCopies = max(1, parallelDiskCopies)
        self.reservations = reservations
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
            sources.append(try await PinnedImage.openVerified(disk.locator, expecting: disk.identity, qemuImg: qemuImg.executable))
        }
        let plans = zip(vm.disks, sources).map { disk, source -> CopyPlan in
            let name = StageFiles.convertedDisk(diskID: disk.id, format: format)
            let guestBytes = disk.virtualSize ?? source.topFile?.size ?? 0
            if let overlay = context.recorded[StageFiles.overlay(diskID: disk.id)] {
                return CopyPlan(name: name, destination: context.newOutput(named: name),
                                sourceSpec: QemuNode.overlay(overlay.path, over: source.tree).imageSpec, sourceFormat: "qcow2",
                                guestBytes: guestBytes)
            }
            return CopyPlan(name: name, destination: context.newOutput(named: name), sourceSpec: source.spec,
                            sourceFormat: disk.locator.format, guestBytes: guestBytes)
        }
        let reservations = try await requireSpace(for: plans, in: context)
        defer { reservations.forEach { $0.release() } }
        let progress = DiskProgress(count: plans.count, report: context.progress)
        // Hash the source while qemu-img reads it: the data is in the page cache and the
        // second core is idle, so the source's digest for metadata.json costs no extra pass.
        // The sparse digest skips holes as qemu-img does (see SourceDigest).
        let source = context.source
        let sourceDigest: Task<SourceDigest, Error>? = context.options.checksum
            ? Task { try await SourceDigest.compute(source, label: "h2k-src-sha256") }
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
                        return (plan.name, plan.destination, summary.note)
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
                files[plan.name] = plan.destination
                hashWhenChecksummed(plan.name, plan.destination)
                if let note = summary.note { notes.append(note) }
            }
        }
        withExtendedLifetime(sources) {}
        var sha256: [String: String] = [:]
        for (name, digest) in outputDigests { sha256[name] = try await digest.value }
        if let sourceDigest {
            let digestFile = context.newOutput(named: SourceDigestFile.name)
            try StageJSON.write(SourceDigestFile(try await sourceDigest.value), to: digestFile)
            files[SourceDigestFile.name] = digestFile
        }
        let compression = context.options.compress ? ", zstd-compressed" : ""
        return StageOutputs(files: files, detail: "\(plans.count) disk(s) to \(format)\(compression)"
                                + (notes.isEmpty ? "" : "; " + notes.joined(separator: "; ")), sha256: sha256)
    }

    /// Asks qemu-img what the copies will write and stops before the first byte when it
    /// cannot fit: a compressed or sparse source can expand hundreds of times, and an
    /// ENOSPC half-way costs the copy so far and fills the disk for everyone else.
    /// The estimates stay held (``SpaceReservations``) until the caller releases them.
    private func requireSpace(for plans: [CopyPlan],
                              in context: StageContext) async throws -> [SpaceReservations.Reservation] {
        let options = context.options
        // Raw output: measure counts the whole virtual size, but convert leaves zero runs as
        // holes, so the blocks a raw file allocates are bounded by the qcow2 measure of the
        // same source (allocated data plus metadata).
        let measuredFormat = options.outFormat == "raw" ? "qcow2" : options.outFormat
        var required: UInt64 = 0
        for plan in plans {
            let measurement = try await qemuImg.measure(plan.sourceSpec, sourceFormat: plan.sourceFormat, outputFormat: measuredFormat,
                                                        compress: options.compress && measuredFormat == "qcow2")
            required = required.saturatingAdd(measurement.required)
        }
        let bytes = ConvertSpaceEstimate(required: required).bytes
        let what = "converting \(plans.count) disk(s) to \(options.outFormat)"
        let work = try reservations.reserve(SpaceNeed(bytes: bytes, directory: context.workDirectory.path),
                                            for: what, file: context.source.path)
        // Publishing hard-links the disks; on another filesystem it copies them.
        guard let outputFilesystem = ExistingAncestor.of(context.outputRoot.path),
              !SameFilesystem.holds(outputFilesystem, context.workDirectory.path) else { return [work] }
        do {
            let output = try reservations.reserve(SpaceNeed(bytes: bytes, directory: outputFilesystem),
                                                  for: what + " and publishing them", file: context.source.path)
            return [work, output]
        } catch {
            work.release()
            throw error
        }
    }

    private func convert(_ plan: CopyPlan, options: ConversionOptions,
                         progress: @escaping @Sendable (Double) -> Void) async throws -> QemuImg.ConversionSummary {
        try? FileManager.default.removeItem(at: plan.destination)
        // A copy that outruns the slowest plausible disk is stuck, not slow (Limits.copying).
        return try await qemuImg.convert(from: plan.sourceSpec, sourceFormat: plan.sourceFormat, to: plan.destination,
                                         outputFormat: options.outFormat, compress: options.compress,
                                         compressLevel: options.compressLevel,
                                         limits: .copying(bytes: plan.guestBytes), progress: progress)
    }
}

/// One disk's copy: the closed qemu spec it reads, the file it writes, and its guest size
/// (for the copy's wall-clock limit).
struct CopyPlan {
    var name: String
    var destination: URL
    var sourceSpec: String
    var sourceFormat: String
    var guestBytes: UInt64
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

/// The bytes to have free before converting, from qemu-img measure's `required` (summed
/// over the disks).
struct ConvertSpaceEstimate: Equatable {
    var required: UInt64

    /// `required` plus 1/64 (about 1.6 %) and ``SpaceCheck/reserveBytes``. qemu counts its
    /// own clusters and metadata exactly, but not the filesystem's (extent trees, indirect
    /// blocks: well under 1 % on ext4 and xfs) nor a qcow2's refcount blocks grown while
    /// writing; the reserve is for the small files (metadata.json, domain.xml, SHA256SUMS)
    /// and the journal, which must still record how the job ended.
    var bytes: UInt64 {
        required.saturatingAdd(required / 64).saturatingAdd(SpaceCheck.reserveBytes)
    }
}

/// The nearest existing directory at or above `path` (the output root may not exist yet).
enum ExistingAncestor {
    static func of(_ path: String) -> String? {
        var url = URL(fileURLWithPath: path).standardizedFileURL
        while true {
            if FileManager.default.fileExists(atPath: url.path) { return url.path }
            let parent = url.deletingLastPathComponent()
            if parent.path == url.path { return nil }
            url = parent
        }
    }
}

enum SameFilesystem {
    static func holds(_ first: String, _ second: String) -> Bool {
        var a = stat(), b = stat()
        guard stat(first, &a) == 0, stat(second, &b) == 0 else { return true }
        return a.st_dev == b.st_dev
    }
}
