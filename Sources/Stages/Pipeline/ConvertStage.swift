import Foundation
import Synchronization
import SystemSupport

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
                let node = QemuNode.overlay(overlay.path, over: source.tree)
                return CopyPlan(name: name, destination: context.newOutput(named: name), sourceSpec: node.imageSpec,
                                sourceNode: node, sourceFormat: "qcow2", guestBytes: guestBytes,
                                sourceIdentity: [overlay.path, disk.locator.path].map(ChunkedCopy.identityLine(of:)))
            }
            return CopyPlan(name: name, destination: context.newOutput(named: name), sourceSpec: source.spec,
                            sourceNode: source.tree, sourceFormat: disk.locator.format, guestBytes: guestBytes,
                            sourceIdentity: [ChunkedCopy.identityLine(of: disk.locator.path)])
        }
        let reservations = try await requireSpace(for: plans, in: context)
        defer { reservations.forEach { $0.release() } }
        let progress = DiskProgress(count: plans.count, report: context.progress)
        // Hash the source while qemu-img reads it: the data is in the page cache and the
        // second core is idle, so the source's digest for metadata.json costs no extra pass.
        // The sparse digest skips holes as qemu-img does (see SourceDigest).
        let source = context.source
        // A Hyper-V export is a directory: no one file to digest (its disks are pinned by identity).
        // Its state is journaled at chunk boundaries too: a resumed copy of the rest of a
        // disk must not wait for a hash of the whole source from its first byte.
        let sourceCheckpointing = HashCheckpointing(checkpoints: context.checkpoints, name: "source sparse-sha256",
                                                    segmentBytes: context.options.copyChunkBytes)
        let sourceDigest: Task<SourceDigest, Error>? = context.options.checksum && context.kind != .hyperv
            ? Task { try await SourceDigest.compute(source, label: "h2k-src-sha256", checkpointing: sourceCheckpointing) }
            : nil
        var files: [String: URL] = [:]
        var notes: [String] = []
        let digestNotes = NoteList()
        // Each finished disk is hashed at once, while the next disk copies and the source
        // hash finishes on the other core, instead of after the stage by the runner.
        // The hash reads the copy under its `.copying` name, which survives a crash, and
        // checkpoints its state at chunk boundaries (ResumableSHA256); the file gets its
        // `.partial` name only once hashed.
        var outputDigests: [String: Task<String, Error>] = [:]
        let checkpoints = context.checkpoints
        let segment = context.options.copyChunkBytes
        func hashWhenChecksummed(_ name: String, _ url: URL) {
            guard context.options.checksum else { return }
            let hash = ResumableSHA256(checkpoints: checkpoints, name: "sha256 " + name, segmentBytes: segment)
            outputDigests[name] = Task {
                let cancelled = CancellationFlag()
                return try await withTaskCancellationHandler {
                    let result = try await BlockingWork.run("h2k-out-sha256") { try hash.digest(of: url, isCancelled: { cancelled.isSet }) }
                    if let resumedAt = result.resumedAt { digestNotes.append("\(name): hash resumed at byte \(resumedAt)") }
                    return result.hex
                } onCancel: { cancelled.set() }
            }
        }
        if parallelDiskCopies > 1 && plans.count > 1 {
            try await withThrowingTaskGroup(of: (String, URL, String?).self) { group in
                var pending = plans.enumerated().makeIterator()
                func startNext() {
                    guard let (index, plan) = pending.next() else { return }
                    group.addTask {
                        let summary = try await convert(plan, in: context) { progress.update(disk: index, $0) }
                        return (plan.name, Self.copying(plan, in: context), summary.note)
                    }
                }
                for _ in 0..<parallelDiskCopies { startNext() }
                for try await (name, url, note) in group {
                    hashWhenChecksummed(name, url)
                    if let note { notes.append(note) }
                    startNext()
                }
            }
        } else {
            for (index, plan) in plans.enumerated() {
                let summary = try await convert(plan, in: context) { progress.update(disk: index, $0) }
                hashWhenChecksummed(plan.name, Self.copying(plan, in: context))
                if let note = summary.note { notes.append(note) }
            }
        }
        withExtendedLifetime(sources) {}
        var sha256: [String: String] = [:]
        for (name, digest) in outputDigests { sha256[name] = try await digest.value }
        notes += digestNotes.values
        for plan in plans {
            try? FileManager.default.removeItem(at: plan.destination)
            do {
                try Rename.replacing(Self.copying(plan, in: context).path, to: plan.destination.path)
            } catch {
                throw StageError(error)
            }
            files[plan.name] = plan.destination
        }
        if let sourceDigest {
            let digestFile = context.newOutput(named: SourceDigestFile.name)
            let digest = try await sourceDigest.value
            if let resumedAt = digest.resumedAt { notes.append("source hash resumed at byte \(resumedAt)") }
            try StageJSON.write(SourceDigestFile(digest), to: digestFile)
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
        // A resumed copy finds part of its disks already written: those blocks are either
        // kept (the copy resumes) or freed first (it starts over), so the work filesystem
        // needs only the rest. Asking for the whole disk again made a 2 TB copy resumed at
        // 90 % on a nearly full filesystem wait for space it would never use.
        let written = plans.reduce(UInt64(0)) { $0.saturatingAdd(AllocatedBytes.of(Self.copying($1, in: context).path)) }
        let estimate = ConvertSpaceEstimate(required: required, alreadyWritten: written)
        let what = "converting \(plans.count) disk(s) to \(options.outFormat)"
            + (written > 0 ? " (\(written) bytes already written by an earlier attempt)" : "")
        let work = try reservations.reserve(SpaceNeed(bytes: estimate.bytes, directory: context.workDirectory.path),
                                            for: what, file: context.source.path)
        // Publishing hard-links the disks; on another filesystem it copies them.
        guard let outputFilesystem = ExistingAncestor.of(context.outputRoot.path),
              !SameFilesystem.holds(outputFilesystem, context.workDirectory.path) else { return [work] }
        do {
            // Publishing on another filesystem copies the whole disks there.
            let output = try reservations.reserve(SpaceNeed(bytes: estimate.wholeBytes, directory: outputFilesystem),
                                                  for: what + " and publishing them", file: context.source.path)
            return [work, output]
        } catch {
            work.release()
            throw error
        }
    }

    /// Where a disk is copied: `<name>.copying` outlives a crash (the runner removes only
    /// `.partial` files); it is moved to the `.partial` name the runner publishes once hashed.
    static func copying(_ plan: CopyPlan, in context: StageContext) -> URL {
        context.workDirectory.appendingPathComponent(plan.name + ".copying")
    }

    /// Copies one disk into ``copying(_:in:)``: in journaled chunks (``ChunkedCopy``), or
    /// whole when compressed.
    private func convert(_ plan: CopyPlan, in context: StageContext,
                         progress: @escaping @Sendable (Double) -> Void) async throws -> QemuImg.ConversionSummary {
        let options = context.options
        if options.compress && options.outFormat != "qcow2" {
            throw StageError(.badInput, file: plan.destination.path, "compression needs qcow2 output, not \(options.outFormat)")
        }
        // Compressed output is copied whole: qemu's `compress` filter fails with EIO on a
        // window whose writes do not fall on cluster boundaries (a raw source with 4 KiB
        // holes, such as a filesystem image, did so at byte 537,337,856).
        if options.compress {
            try? FileManager.default.removeItem(at: Self.copying(plan, in: context))
            var whole = try await qemuImg.convert(from: plan.sourceSpec, sourceFormat: plan.sourceFormat,
                                                  to: Self.copying(plan, in: context), outputFormat: options.outFormat,
                                                  compress: options.compress, compressLevel: options.compressLevel, progress: progress)
            let note = plan.name + ": compressed, so copied whole, not in chunks (qemu's compress filter fails on unaligned "
                + "window writes); a crash during its copy starts it again"
            whole.note = whole.note.map { $0 + "; " + note } ?? note
            return whole
        }
        // The target gets the size qemu sees (a vpc's geometry rounding included), as a
        // whole-image convert would have made it; measured through the backing chain, if any.
        var summary = QemuImg.ConversionSummary()
        let virtualSize = try await qemuImg.guestSize(plan.sourceSpec, format: plan.sourceFormat)
        let copying = Self.copying(plan, in: context)
        let chunkBytes = ChunkWindows.chunkBytes(configured: options.copyChunkBytes, virtualSize: virtualSize)
        let copy = ChunkedCopy(qemuImg: qemuImg, checkpoints: context.checkpoints, name: "copy " + plan.name,
                               source: plan.sourceNode, sourceFormat: plan.sourceFormat, sourceIdentity: plan.sourceIdentity,
                               target: copying, format: options.outFormat, compress: options.compress,
                               windows: ChunkWindows(virtualSize: virtualSize, chunkBytes: chunkBytes))
        var events = try await copy.run(progress: progress)
        if chunkBytes != options.copyChunkBytes {
            events.insert("copied in \(ChunkWindows.maximumCount) windows of \(chunkBytes >> 20) MiB instead of copy_chunk_mib "
                + "\(options.copyChunkBytes >> 20) (a window with data costs a qemu-img start and an fsync; at most "
                + "\(ChunkWindows.maximumCount) a disk)", at: 0)
        }
        if !events.isEmpty {
            let resumed = plan.name + ": " + events.joined(separator: "; ")
            summary.note = summary.note.map { $0 + "; " + resumed } ?? resumed
        }
        return summary
    }
}

/// One disk's copy: the closed qemu spec it reads, the file it writes, and its guest size
/// (for the copy's wall-clock limit).
struct CopyPlan {
    var name: String
    var destination: URL
    var sourceSpec: String
    /// The same source as a node, for the chunked copy's windows.
    var sourceNode: QemuNode
    var sourceFormat: String
    var guestBytes: UInt64
    /// The source files' identities a journaled chunk is bound to (``CopyCheckpoint``).
    var sourceIdentity: [String]
}

/// Notes from concurrent tasks, in the order they arrive.
final class NoteList: Sendable {
    private let notes = Mutex<[String]>([])
    func append(_ note: String) { notes.withLock { $0.append(note) } }
    var values: [String] { notes.withLock { $0 } }
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
    /// Blocks the disks' `.copying` files already hold (an earlier attempt's copy).
    var alreadyWritten: UInt64 = 0

    /// `required` plus 1/64 (about 1.6 %) and ``SpaceCheck/reserveBytes``. qemu counts its
    /// own clusters and metadata exactly, but not the filesystem's (extent trees, indirect
    /// blocks: well under 1 % on ext4 and xfs) nor a qcow2's refcount blocks grown while
    /// writing; the reserve is for the small files (metadata.json, domain.xml, SHA256SUMS)
    /// and the journal, which must still record how the job ended.
    var wholeBytes: UInt64 {
        required.saturatingAdd(required / 64).saturatingAdd(SpaceCheck.reserveBytes)
    }

    /// What is still to be written where the copies are: ``wholeBytes`` less what an earlier
    /// attempt wrote, never less than the reserve.
    var bytes: UInt64 {
        let copies = required.saturatingAdd(required / 64)
        return (copies > alreadyWritten ? copies - alreadyWritten : 0).saturatingAdd(SpaceCheck.reserveBytes)
    }
}

/// The bytes a file's blocks take on its filesystem (`st_blocks`, 512-byte units): a sparse
/// file's holes count nothing. 0 for a missing file.
enum AllocatedBytes {
    static func of(_ path: String) -> UInt64 {
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_blocks > 0 else { return 0 }
        let (bytes, overflow) = UInt64(info.st_blocks).multipliedReportingOverflow(by: 512)
        return overflow ? .max : bytes
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
