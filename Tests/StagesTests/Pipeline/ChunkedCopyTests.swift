import Foundation
import Synchronization
import Testing
import TestSupport
@testable import Stages

/// Checkpoints in memory that can fail a save, as a crash between a chunk's fsync and its
/// journal commit would: the chunk's bytes are in the target, the journal does not know.
final class MemoryCheckpoints: StageCheckpoints {
    private let values = Mutex<[String: String]>([:])
    /// Saves with at least this many chunks done fail once (nil: never).
    let failAtChunks = Mutex<Int?>(nil)

    func load(_ name: String) throws -> String? { values.withLock { $0[name] } }

    func save(_ name: String, _ value: String) throws {
        let chunks = (try? JSONDecoder().decode(CopyCheckpoint.self, from: Data(value.utf8)))?.chunksDone ?? 0
        let fail = failAtChunks.withLock { limit -> Bool in
            guard let threshold = limit, chunks >= threshold else { return false }
            limit = nil
            return true
        }
        if fail { throw StageError(.ioFailed, "simulated crash before chunk \(chunks) was journaled") }
        values.withLock { $0[name] = value }
        savedChunks.withLock { $0.append(chunks) }
    }

    /// `chunksDone` of every save that succeeded, in order.
    let savedChunks = Mutex<[Int]>([])
}

@Suite struct ChunkedCopyTests {
    /// A copy of one source file (`sourceFormat` at the top, no backing) in `chunk`-byte windows.
    static func copy(_ source: URL, _ sourceFormat: String, to target: URL, format: String = "qcow2", compress: Bool = false,
                     size: UInt64, chunk: UInt64, checkpoints: MemoryCheckpoints) -> ChunkedCopy {
        ChunkedCopy(qemuImg: QemuImg(), checkpoints: checkpoints, name: "copy disk", source: .file(source.path),
                    sourceFormat: sourceFormat, sourceIdentity: [ChunkedCopy.identityLine(of: source.path)],
                    target: target, format: format, compress: compress,
                    windows: ChunkWindows(virtualSize: size, chunkBytes: chunk))
    }

    @Test func aHugeDiskGetsAtMost128WindowsOfWholeMiB() {
        let gib: UInt64 = 1 << 30
        #expect(ChunkWindows.chunkBytes(configured: gib, virtualSize: 4 * gib) == gib)
        #expect(ChunkWindows.chunkBytes(configured: gib, virtualSize: 128 * gib) == gib)
        let tib = ChunkWindows.chunkBytes(configured: gib, virtualSize: 1024 * gib)
        #expect(tib == 8 * gib && ChunkWindows(virtualSize: 1024 * gib, chunkBytes: tib).count == 128)
        let odd = ChunkWindows.chunkBytes(configured: 64 << 20, virtualSize: 1_000_000_000_000)
        #expect(odd % (1 << 20) == 0 && ChunkWindows(virtualSize: 1_000_000_000_000, chunkBytes: odd).count <= 128)
        #expect(ChunkWindows.chunkBytes(configured: gib, virtualSize: .max) >= UInt64.max / 128)
    }

    @Test func windowsCoverTheDiskOnceWithAShortLastWindow() {
        let windows = ChunkWindows(virtualSize: 10 << 20, chunkBytes: 4 << 20)
        #expect(windows.count == 3)
        #expect(windows.window(0) == (0, 4 << 20))
        #expect(windows.window(2) == (8 << 20, 2 << 20))
        #expect(windows.window(3) == (10 << 20, 0))
        #expect(windows.bytes(inFirst: 2) == 8 << 20)
        #expect(windows.bytes(inFirst: 3) == 10 << 20)
        #expect(ChunkWindows(virtualSize: 8 << 20, chunkBytes: 4 << 20).count == 2)
        #expect(ChunkWindows(virtualSize: 0, chunkBytes: 4 << 20).count == 0)
        #expect(ChunkWindows(virtualSize: .max, chunkBytes: 1 << 30).window(Int.max) == (.max, 0))
    }

    /// A copy "crashes" after chunk 2 of 4 is durable but before it is journaled, then a new
    /// run resumes: it copies chunk 2 again (emptied first when compressed, since qemu cannot
    /// rewrite a compressed cluster) and the result equals the source.
    @Test(arguments: [("qcow2", false), ("qcow2", true), ("raw", false)])
    func resumedCopyEqualsTheSource(format: String, compress: Bool) async throws {
        let scratch = try Scratch("chunked-copy")
        let source = scratch.file("source.raw")
        // Compressible, non-zero data with a hole in the middle (48 MiB written of 64).
        _ = try await sh(["sh", "-c", "head -c 18M /dev/urandom | base64 -w0 | head -c 24M > '\(source.path)' && "
                          + "truncate -s 40M '\(source.path)' && head -c 24M /dev/urandom >> '\(source.path)'"])
        let target = scratch.file("out.copying")
        let checkpoints = MemoryCheckpoints()
        checkpoints.failAtChunks.withLock { $0 = 2 }
        let copy = Self.copy(source, "raw", to: target, format: format, compress: compress, size: 64 << 20, chunk: 16 << 20, checkpoints: checkpoints)
        await #expect(throws: StageError.self) { try await copy.run { _ in } }
        let events = try await copy.run { _ in }
        #expect(events.contains { $0.contains("resumed at chunk 2 of 4") }, "\(events)")
        if format == "qcow2" { #expect(events.contains("no leaked clusters"), "\(events)") }
        let compare = try await sh(["qemu-img", "compare", "-f", "raw", "-F", format, source.path, target.path], allowFailure: true)
        #expect(compare.status == 0, "\(compare.out)\(compare.err)")
        if format == "qcow2" {
            let check = try await sh(["qemu-img", "check", target.path], allowFailure: true)
            #expect(check.status == 0, "\(check.out)")
            let info = try await sh(["qemu-img", "info", target.path])
            #expect(info.out.contains("compression type: zstd") == compress)
        }
        // A finished copy is not done again.
        #expect(try await copy.run { _ in } == events)
    }

    @Test func windowsHoldingDataAreThoseARangeTouches() {
        let windows = ChunkWindows(virtualSize: 10 << 20, chunkBytes: 4 << 20)
        #expect(windows.windows(holding: []).isEmpty)
        #expect(windows.windows(holding: [0..<1]) == [0])
        #expect(windows.windows(holding: [(4 << 20) - 1..<(4 << 20) + 1]) == [0, 1])
        #expect(windows.windows(holding: [8 << 20..<UInt64.max]) == [2])
        #expect(windows.windows(holding: [20 << 20..<(30 << 20), 5..<5]).isEmpty)
        #expect(ChunkWindows(virtualSize: 0, chunkBytes: 4 << 20).windows(holding: [0..<10]).isEmpty)
    }

    /// Windows with no data in the source are journaled without a copy (no save of their
    /// own), except the first one after a resume, which a dead writer may have touched; the
    /// result still equals the source.
    @Test(arguments: [("qcow2", false), ("raw", false), ("qcow2", true)])
    func emptyWindowsAreJournaledWithoutACopy(format: String, compress: Bool) async throws {
        let scratch = try Scratch("chunked-copy-sparse")
        let source = scratch.file("source.qcow2")
        _ = try await sh(["qemu-img", "create", "-q", "-f", "qcow2", source.path, "64M"])
        _ = try await sh(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 2M", "-c", "write -P 0xa5 60M 1M", source.path])
        let target = scratch.file("out.copying")
        let checkpoints = MemoryCheckpoints()
        let copy = Self.copy(source, "qcow2", to: target, format: format, compress: compress, size: 64 << 20, chunk: 16 << 20, checkpoints: checkpoints)
        #expect(try await copy.run { _ in }.isEmpty)
        // Created (0), window 0 copied (1), windows 1 and 2 skipped, journaled before window 3 (3), then 4.
        #expect(checkpoints.savedChunks.withLock { $0 } == [0, 1, 3, 4])
        let compare = try await sh(["qemu-img", "compare", "-F", format, source.path, target.path], allowFailure: true)
        #expect(compare.status == 0, "\(compare.out)\(compare.err)")

        // Interrupted at the save before window 3: the journal says 1 done, so the resume copies window 1 (empty, but
        // first after the resume) and skips window 2.
        let again = scratch.file("again.copying")
        let interrupted = MemoryCheckpoints()
        interrupted.failAtChunks.withLock { $0 = 3 }
        let resumed = Self.copy(source, "qcow2", to: again, format: format, compress: compress, size: 64 << 20, chunk: 16 << 20, checkpoints: interrupted)
        await #expect(throws: StageError.self) { try await resumed.run { _ in } }
        let events = try await resumed.run { _ in }
        #expect(events.contains { $0.contains("resumed at chunk 2 of 4") }, "\(events)")
        // Before: 0, 1. The resume: its own note (1), window 1 copied (2), 2 skipped, 3 and 4.
        #expect(interrupted.savedChunks.withLock { $0 } == [0, 1, 1, 2, 3, 4])
        let recompare = try await sh(["qemu-img", "compare", "-F", format, source.path, again.path], allowFailure: true)
        #expect(recompare.status == 0, "\(recompare.out)\(recompare.err)")
    }

    /// The guest-fix overlay over a raw disk and a VMDK snapshot over its parent are read
    /// through their backing files window by window: an interrupted and resumed copy equals
    /// the flattened chain. (qemu-img info opens no backing file and refused these specs;
    /// a bare file as the backing of a window's child needs a raw node of its own.)
    @Test(arguments: ["raw", "vmdk"])
    func aSourceWithABackingFileIsCopiedInWindows(baseFormat: String) async throws {
        let scratch = try Scratch("chunked-copy-backing")
        let raw = scratch.file("base.raw")
        _ = try await sh(["sh", "-c", "head -c 40M /dev/urandom > '\(raw.path)' && truncate -s 64M '\(raw.path)'"])
        let base = baseFormat == "raw" ? raw : scratch.file("base.vmdk")
        if baseFormat == "vmdk" { _ = try await sh(["qemu-img", "convert", "-q", "-f", "raw", "-O", "vmdk", raw.path, base.path]) }
        let overlay = scratch.file("overlay.qcow2")
        _ = try await sh(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base.path, "-F", baseFormat, overlay.path])
        _ = try await sh(["qemu-io", "-f", "qcow2", "-c", "write -P 0x11 20M 1M", "-c", "write -P 0x22 50M 1M", overlay.path])
        let baseNode: QemuNode = baseFormat == "raw" ? .file(base.path) : .image(format: "vmdk", file: .file(base.path), backing: nil)
        let node = QemuNode.overlay(overlay.path, over: baseNode)
        let size = try await QemuImg().guestSize(node.imageSpec, format: "qcow2")
        #expect(size == 64 << 20)
        let target = scratch.file("out.copying")
        let checkpoints = MemoryCheckpoints()
        checkpoints.failAtChunks.withLock { $0 = 3 }
        let copy = ChunkedCopy(qemuImg: QemuImg(), checkpoints: checkpoints, name: "copy disk", source: node,
                               sourceFormat: "qcow2", sourceIdentity: [overlay.path, base.path].map(ChunkedCopy.identityLine),
                               target: target, format: "qcow2", compress: false,
                               windows: ChunkWindows(virtualSize: size, chunkBytes: 16 << 20))
        await #expect(throws: StageError.self) { try await copy.run { _ in } }
        let events = try await copy.run { _ in }
        #expect(events.contains { $0.contains("resumed at chunk 3 of 4") }, "\(events)")
        let compare = try await sh(["qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", overlay.path, target.path], allowFailure: true)
        #expect(compare.status == 0, "\(compare.out)\(compare.err)")
    }

    /// A checkpoint names its target by inode: a file put in its place is not trusted.
    @Test func aReplacedTargetStartsTheCopyOver() async throws {
        let scratch = try Scratch("chunked-copy-replaced")
        let source = scratch.file("source.raw")
        _ = try await sh(["sh", "-c", "head -c 8M /dev/urandom > '\(source.path)' && truncate -s 32M '\(source.path)'"])
        let target = scratch.file("out.copying")
        let checkpoints = MemoryCheckpoints()
        checkpoints.failAtChunks.withLock { $0 = 1 }
        let copy = Self.copy(source, "raw", to: target, format: "qcow2", compress: false, size: 32 << 20, chunk: 8 << 20, checkpoints: checkpoints)
        await #expect(throws: StageError.self) { try await copy.run { _ in } }
        // Made beside it, then renamed over it, so it cannot reuse the old inode number.
        let replacement = scratch.file("replacement")
        _ = try await sh(["qemu-img", "create", "-q", "-f", "qcow2", replacement.path, "32M"])
        try FileManager.default.removeItem(at: target)
        try FileManager.default.moveItem(at: replacement, to: target)
        let events = try await copy.run { _ in }
        #expect(events.isEmpty, "\(events)")
        let compare = try await sh(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", source.path, target.path], allowFailure: true)
        #expect(compare.status == 0, "\(compare.out)")
    }
}
