import CLinux
import Foundation
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

/// Produces the newest state of a VHDX checkpoint chain as one raw file, which qemu cannot:
/// it refuses a differencing VHDX (`HAS_PARENT`).
///
/// The base (a plain VHDX, which qemu reads) is copied with `qemu-img convert -O raw` from its
/// pinned file; then each differencing file's present blocks are written over it in chain
/// order (oldest checkpoint first), per MS-VHDX 2.5.1.1: FULLY_PRESENT blocks whole,
/// PARTIALLY_PRESENT ones sector by sector as the chunk's sector bitmap says, ZERO and
/// UNMAPPED as zeros, NOT_PRESENT and UNDEFINED left as the parent has them.
///
/// The result is written under `<target>.partial`, synced, then renamed, so a crash never
/// leaves a half-flattened disk under the final name.
enum VHDXFlattener {
    static func flatten(_ chain: VHDXChain, into target: URL, qemuImg: String = "qemu-img") async throws {
        let partial = URL(fileURLWithPath: target.path + ".partial")
        // A rerun of the stage (a crash before it was journaled) starts over from the base.
        try? FileManager.default.removeItem(at: partial)
        try? FileManager.default.removeItem(at: target)
        let base = chain.base
        // The flattened file holds at most what the chain's files hold (holes stay holes):
        // their stored bytes bound what it allocates. Too little space is `.noSpace` (the job
        // waits for space), not a fault of the input.
        let stored = chain.links.reduce(UInt64(0)) { $0.saturatingAdd($1.file.size) }
        try SpaceCheck.require(SpaceNeed(bytes: stored.saturatingAdd(SpaceCheck.reserveBytes), directory: target.deletingLastPathComponent().path),
                               for: "flattening the checkpoint chain of \(URL(fileURLWithPath: base.path).lastPathComponent)", file: base.path)
        let image = try await PinnedImage.openVerified(DiskLocator(path: base.path, format: "vhdx"),
                                                       expecting: FileIdentity(device: base.file.device, inode: base.file.inode),
                                                       qemuImg: qemuImg)
        let size = base.layout.virtualDiskSize
        let command = ExternalCommand(qemuImg, ["convert", "-f", "vhdx", "-O", "raw", image.spec, partial.path],
                                      limits: .copying(bytes: size))
        let result = try await command.run(about: base.path)
        // The spec names the image's open descriptors: they must stay open until qemu-img exited.
        withExtendedLifetime(image) {}
        guard result.status == 0 else {
            try? FileManager.default.removeItem(at: partial)
            try result.requireHostResources(of: command, about: base.path)
            throw StageError(.badInput, file: base.path,
                             "qemu-img could not read the base VHDX of the checkpoint chain: \(InputProbe.qemuMessage(result))")
        }
        let links = Array(chain.differencing)
        do {
            try await BlockingWork.run("h2k-vhdx-flatten") {
                let output = try OutputFile(path: partial.path)
                for link in links {
                    try VHDXBlockApplier(link: link, output: output).apply()
                }
                try output.sync()
            }
            try FileManager.default.moveItem(at: partial, to: target)
        } catch {
            try? FileManager.default.removeItem(at: partial)
            throw error
        }
    }
}

/// The raw file being flattened into, written with `pwrite`.
final class OutputFile {
    let path: String
    private let descriptor: Int32

    init(path: String) throws {
        descriptor = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)
        guard descriptor >= 0 else {
            throw StageError(.ioFailed, file: path, "cannot open for writing: \(String(cString: strerror(errno)))")
        }
        self.path = path
    }

    deinit { close(descriptor) }

    func write(_ data: Data, at offset: UInt64) throws {
        var done = 0
        try data.withUnsafeBytes { buffer in
            guard let start = buffer.baseAddress else { return }
            while done < buffer.count {
                let wrote = SystemCall.retryingOnInterrupt { pwrite(descriptor, start + done, buffer.count - done, off_t(offset + UInt64(done))) }
                guard wrote > 0 else {
                    throw StageError(errno == ENOSPC ? .noSpace : .ioFailed, file: path,
                                     "write failed at byte \(offset + UInt64(done)): \(String(cString: strerror(errno)))")
                }
                done += wrote
            }
        }
    }

    /// Makes `count` bytes at `offset` read as zeros by punching a hole (no space used, so a
    /// hostile run of ZERO blocks over a huge disk costs nothing); false when the filesystem
    /// cannot punch holes and the caller must write zeros.
    func punchHole(at offset: UInt64, count: UInt64) -> Bool {
        h2k_punch_hole(descriptor, Int64(offset), Int64(count)) == 0
    }

    func sync() throws {
        guard fsync(descriptor) == 0 else {
            throw StageError(.ioFailed, file: path, "fsync failed: \(String(cString: strerror(errno)))")
        }
    }
}

/// Writes one differencing file's blocks over the raw state of its parent.
struct VHDXBlockApplier {
    let link: VHDXChainLink
    let output: OutputFile
    /// Copies go in pieces of at most this many bytes (a block may be 256 MiB).
    static let pieceSize: UInt64 = 1 << 20

    func apply() throws {
        let layout = link.layout
        let reader = try link.file.reader()
        let table = VHDXBlockTable(layout: layout, reader: reader)
        let sectorsPerBlock = layout.blockSize / layout.logicalSectorSize
        for chunk in 0..<table.chunkCount {
            var bitmap: (offset: UInt64, bytes: Data)?
            for (index, content) in try table.chunk(chunk).enumerated() {
                let block = chunk * layout.chunkRatio + UInt64(index)
                let start = block * layout.blockSize
                let length = min(layout.blockSize, layout.virtualDiskSize - start)
                switch content {
                case .parent:
                    continue
                case .zero:
                    try zero(at: start, count: length)
                case .data(let fileOffset):
                    try copy(reader, from: fileOffset, to: start, count: length)
                case .partial(let fileOffset, let bitmapOffset):
                    if bitmap?.offset != bitmapOffset {
                        bitmap = (bitmapOffset, try reader.readExactly(at: bitmapOffset, count: Int(VHDXLayout.megabyte),
                                                                      what: "VHDX sector bitmap block"))
                    }
                    guard let bits = bitmap?.bytes else { continue }
                    let firstSector = UInt64(index) * sectorsPerBlock
                    let sectors = length / layout.logicalSectorSize
                    for run in Self.presentRuns(in: bits, from: firstSector, count: sectors) {
                        let offset = (run.lowerBound - firstSector) * layout.logicalSectorSize
                        try copy(reader, from: fileOffset + offset, to: start + offset,
                                 count: UInt64(run.count) * layout.logicalSectorSize)
                    }
                }
            }
        }
    }

    /// Runs of set bits (sectors present in this file) among `count` bits from `first`;
    /// bit 0 of byte 0 is the chunk's first sector (MS-VHDX 2.4).
    static func presentRuns(in bitmap: Data, from first: UInt64, count: UInt64) -> [Range<UInt64>] {
        var runs: [Range<UInt64>] = []
        var runStart: UInt64?
        for sector in first..<(first + count) {
            let byte = bitmap[bitmap.startIndex + Int(sector / 8)]
            let present = byte >> (sector % 8) & 1 == 1
            if present, runStart == nil { runStart = sector }
            if !present, let begun = runStart { runs.append(begun..<sector); runStart = nil }
        }
        if let begun = runStart { runs.append(begun..<(first + count)) }
        return runs
    }

    private func copy(_ reader: ByteRangeReader, from source: UInt64, to destination: UInt64, count: UInt64) throws {
        var done: UInt64 = 0
        while done < count {
            let piece = min(Self.pieceSize, count - done)
            let data = try reader.readExactly(at: source + done, count: Int(piece), what: "VHDX payload block")
            try output.write(data, at: destination + done)
            done += piece
        }
    }

    private func zero(at destination: UInt64, count: UInt64) throws {
        if output.punchHole(at: destination, count: count) { return }
        let zeros = Data(count: Int(min(Self.pieceSize, count)))
        var done: UInt64 = 0
        while done < count {
            let piece = min(Self.pieceSize, count - done)
            try output.write(piece == UInt64(zeros.count) ? zeros : zeros.prefix(Int(piece)), at: destination + done)
            done += piece
        }
    }
}
