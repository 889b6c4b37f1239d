import Foundation
import Testing
import TestSupport
@testable import Stages

@Suite("SparseDigest", .serialized)
struct SparseDigestTests {
    /// The repository's scripts/ directory, found from this file's path.
    private static let script = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("scripts/sparse-digest")

    private func write(_ bytes: Data, to url: URL, at offset: UInt64) throws {
        let handle = try FileHandle(forUpdating: url)
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: bytes)
        try handle.close()
    }

    private func random(_ count: Int) -> Data {
        Data((0..<count).map { _ in UInt8.random(in: 0...255) })
    }

    /// 8 MiB with a hole at the start, 64 KiB of data at 1 MiB + 100, one byte at 7 MiB, a
    /// hole to the end.
    private func sparseFile(in dir: Scratch, named name: String = "sparse.raw") async throws -> (URL, Data) {
        let url = dir.file(name)
        try await TestImageFactory.run("truncate", ["-s", "8M", url.path])
        let data = random(64 << 10)
        try write(data, to: url, at: (1 << 20) + 100)
        try write(Data([0x5a]), to: url, at: 7 << 20)
        return (url, data)
    }

    private func scriptDigest(_ url: URL) async throws -> String {
        String(try await TestImageFactory.run("python3", [Self.script.path, url.path]).prefix { $0 != " " })
    }

    @Test("the same content gives the same digest whatever the allocation: holes, written zeros, dense")
    func allocationIndependent() async throws {
        let dir = try Scratch()
        let (sparse, _) = try await sparseFile(in: dir)
        let dense = dir.file("dense.raw")
        try await TestImageFactory.run("cp", ["--sparse=never", sparse.path, dense.path])
        // Zeros written over part of a hole: allocated, still zero.
        let mixed = dir.file("mixed.raw")
        try await TestImageFactory.run("cp", ["--sparse=always", sparse.path, mixed.path])
        try write(Data(count: 3 << 20), to: mixed, at: 2 << 20)

        #expect(try SparseDigest.hasHoles(sparse))
        #expect(try !SparseDigest.hasHoles(dense))
        let expected = try SparseDigest.sha256(of: sparse)
        #expect(try SparseDigest.sha256(of: dense) == expected)
        #expect(try SparseDigest.sha256(of: mixed) == expected)
        #expect(try await scriptDigest(sparse) == expected)
    }

    @Test("one byte changed anywhere changes the digest: in a hole, in data, at the end; so does the size")
    func sensitive() async throws {
        let dir = try Scratch()
        let (original, _) = try await sparseFile(in: dir)
        let reference = try SparseDigest.sha256(of: original)
        let changes: [(String, UInt64, UInt8)] = [("hole", 4 << 20, 1), ("data", (1 << 20) + 4_000, 0), ("start", 0, 0x80),
                                                  ("last byte", (8 << 20) - 1, 7)]
        var seen: Set<String> = [reference]
        for (name, offset, byte) in changes {
            let copy = dir.file("changed-\(name.filter(\.isLetter)).raw")
            try await TestImageFactory.run("cp", ["--sparse=always", original.path, copy.path])
            // XOR so the byte surely differs from what was there.
            let handle = try FileHandle(forReadingFrom: copy)
            try handle.seek(toOffset: offset)
            let old = try handle.read(upToCount: 1)?.first ?? 0
            try handle.close()
            try write(Data([old ^ (byte == 0 ? 0xff : byte)]), to: copy, at: offset)
            let digest = try SparseDigest.sha256(of: copy)
            #expect(!seen.contains(digest), "change in \(name) not seen")
            seen.insert(digest)
            #expect(try await scriptDigest(copy) == digest)
        }
        // A zero tail is content too.
        let longer = dir.file("longer.raw")
        try await TestImageFactory.run("cp", ["--sparse=always", original.path, longer.path])
        try await TestImageFactory.run("truncate", ["-s", "9M", longer.path])
        #expect(try SparseDigest.sha256(of: longer) != reference)
    }

    @Test("the verification script agrees with the Swift digest", arguments: [0, 1, 4095, 4096, 4097, 300_000])
    func scriptAgrees(size: Int) async throws {
        let dir = try Scratch()
        let dense = dir.file("random.bin")
        try TestImageFactory.writeRandom(at: dense, bytes: size)
        #expect(try await scriptDigest(dense) == SparseDigest.sha256(of: dense))
        // The same with a hole of 1 MiB in front and zeros at the end.
        let holed = dir.file("holed.bin")
        try await TestImageFactory.run("truncate", ["-s", "1M", holed.path])
        try write(try Data(contentsOf: dense), to: holed, at: 1 << 20)
        try await TestImageFactory.run("truncate", ["-s", "\((1 << 20) + size + 5_000)", holed.path])
        #expect(try await scriptDigest(holed) == SparseDigest.sha256(of: holed))
    }

    @Test("a source's digest is the sparse digest, dense or not; its journal key never looks like a plain SHA-256 of it")
    func sourceDigest() async throws {
        let dir = try Scratch()
        let (sparse, _) = try await sparseFile(in: dir)
        let dense = dir.file("dense.raw")
        try await TestImageFactory.run("cp", ["--sparse=never", sparse.path, dense.path])
        let ofSparse = try SourceDigest.of(sparse)
        #expect(try SourceDigest.of(dense) == ofSparse, "a copy is the same source")
        #expect(ofSparse.sparseSHA256 == (try SparseDigest.sha256(of: sparse)))
        let keyText = dir.file("key.txt")
        try Data(("sparse-sha256:" + ofSparse.sparseSHA256).utf8).write(to: keyText)
        #expect(try await ofSparse.identityKey == TestImageFactory.referenceDigest(of: keyText))
        #expect(try await ofSparse.identityKey != TestImageFactory.referenceDigest(of: dense))
        // The stage file: the new key, and a plain SHA-256 recorded by an earlier version.
        #expect(SourceDigestFile(ofSparse).sha256 == nil && SourceDigestFile(ofSparse).sparseSHA256 == ofSparse.sparseSHA256)
        #expect(try SourceDigestFile(ofSparse).identityKey == ofSparse.identityKey)
        #expect(try SourceDigestFile(sha256: String(repeating: "a", count: 64)).identityKey == String(repeating: "a", count: 64))
    }

    @Test("a 1 TiB sparse file with data at three places hashes in the time of its data")
    func terabyteSparse() async throws {
        let dir = try Scratch()
        let url = dir.file("huge.raw")
        try await TestImageFactory.run("truncate", ["-s", "1T", url.path])
        for offset: UInt64 in [0, 300 << 30, (1 << 40) - (1 << 20)] {
            try await TestImageFactory.run("dd", ["if=/dev/urandom", "of=\(url.path)", "bs=1M", "count=1", "seek=\(offset >> 20)",
                                            "conv=notrunc", "status=none"])
        }
        let started = ContinuousClock.now
        _ = try SourceDigest.of(url)
        let elapsed = ContinuousClock.now - started
        // Reading 1 TiB densely takes about 50 minutes at this CPU's 360 MB/s; the three MiB of
        // data take well under a second. The bound only has to tell the two apart, on a loaded host.
        #expect(elapsed < .seconds(120), "took \(elapsed)")
    }

    @Test("cancelling stops the hash")
    func cancellation() async throws {
        let dir = try Scratch()
        let (sparse, _) = try await sparseFile(in: dir)
        #expect(throws: CancellationError.self) { try SparseDigest.sha256(of: sparse, isCancelled: { true }) }
        let dense = dir.file("dense.bin")
        try TestImageFactory.writeRandom(at: dense, bytes: 1 << 20)
        #expect(throws: CancellationError.self) { try FileDigest.hash(.sha256, of: dense, isCancelled: { true }) }
    }

    /// Figures, not a check: `H2K_MEASURE_SPARSE=1 swift test --filter SparseDigestTests/measure` (`=full` adds
    /// the plain SHA-256 of 16 GiB of the same file, about a minute).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["H2K_MEASURE_SPARSE"] != nil))
    func measure() async throws {
        let dir = try Scratch()
        let url = dir.file("huge.raw")
        try await TestImageFactory.run("truncate", ["-s", "1T", url.path])
        // 1 GiB of random data in four pieces.
        for offset: UInt64 in [0, 300 << 30, 700 << 30, (1 << 40) - (256 << 20)] {
            try await TestImageFactory.run("dd", ["if=/dev/urandom", "of=\(url.path)", "bs=1M", "count=256", "seek=\(offset >> 20)",
                                            "conv=notrunc", "status=none"])
        }
        try await TestImageFactory.run("sync", [])
        func timed<T>(_ label: String, _ work: () async throws -> T) async rethrows -> T {
            let started = ContinuousClock.now
            let value = try await work()
            print("MEASURE \(label): \(ContinuousClock.now - started)")
            return value
        }
        _ = try await timed("sparse digest, 1 TiB with 1 GiB data") { try SparseDigest.sha256(of: url) }
        if ProcessInfo.processInfo.environment["H2K_MEASURE_SPARSE"] == "full" {
            _ = try await timed("plain SHA-256, first 16 GiB (then x64 for 1 TiB)") {
                try FileDigest.hash(.sha256, of: url, offset: 0, length: 16 << 30)
            }
        }
        let output = dir.file("huge.qcow2")
        _ = try await timed("qemu-img convert -O qcow2") {
            try await TestImageFactory.run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", url.path, output.path])
        }
        // A dense file: the sparse digest against plain SHA-256 (both read and hash every byte).
        let dense = dir.file("dense.bin")
        try await TestImageFactory.run("dd", ["if=/dev/urandom", "of=\(dense.path)", "bs=1M", "count=1024", "status=none"])
        _ = try await timed("dense 1 GiB, plain SHA-256 (warm)") { try FileDigest.sha256(of: dense) }
        _ = try await timed("dense 1 GiB, sparse digest (warm)") { try SparseDigest.sha256(of: dense) }
        _ = try await timed("dense 1 GiB, plain SHA-256 (warm, again)") { try FileDigest.sha256(of: dense) }
        _ = try await timed("dense 1 GiB, sparse digest (warm, again)") { try SparseDigest.sha256(of: dense) }
        try FileManager.default.removeItem(at: dense)
        // Cold: this file's pages dropped from the cache (dd's nocache), not the whole machine's.
        func dropCache() async throws {
            try await TestImageFactory.run("dd", ["if=\(url.path)", "of=/dev/null", "iflag=nocache", "count=0", "status=none"])
        }
        try await dropCache()
        _ = try await timed("sparse digest, cold") { try SparseDigest.sha256(of: url) }
        try await dropCache()
        try FileManager.default.removeItem(at: output)
        _ = try await timed("qemu-img convert -O qcow2, cold") {
            try await TestImageFactory.run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", url.path, output.path])
        }
    }

    // MARK: - Resuming

    /// 40 MiB: data in the first 9 MiB, a 10 MiB hole, data to 30 MiB with zeros written in
    /// it, a hole to the end.
    private func segmentedFile(in dir: Scratch) async throws -> URL {
        let url = dir.file("segmented.raw")
        try await TestImageFactory.run("truncate", ["-s", "40M", url.path])
        for (seek, count) in [(0, 9), (19, 11)] {
            try await TestImageFactory.run("dd", ["if=/dev/urandom", "of=\(url.path)", "bs=1M", "seek=\(seek)", "count=\(count)",
                                                  "conv=notrunc", "status=none"])
        }
        try write(Data(count: 1 << 20), to: url, at: 24 << 20)
        return url
    }

    @Test("a digest cut part way goes on from its last checkpoint and equals the digest read whole and the script's")
    func aCutDigestResumes() async throws {
        let dir = try Scratch()
        let url = try await segmentedFile(in: dir)
        let reference = try SparseDigest.sha256(of: url)
        // 256 KiB reads: cut in the first data, just past the hole, and late in the second data.
        for cutAfter in [20, 37, 70] {
            let checkpoints = MemoryCheckpoints()
            let saving = HashCheckpointing(checkpoints: checkpoints, name: "source", segmentBytes: 4 << 20)
            let cut = ResumableSHA256Tests.CutAfter(cutAfter)
            #expect(throws: CancellationError.self) {
                _ = try SparseDigest.sha256(of: url, isCancelled: { cut.reached }, checkpointing: saving)
            }
            let resumed = try SparseDigest.sha256(of: url, isCancelled: { false }, checkpointing: saving)
            let at = try #require(resumed.resumedAt, "cut after \(cutAfter) reads")
            #expect(at % 4096 == 0 && at > 0 && at < 40 << 20)
            #expect(resumed.hex == reference, "cut after \(cutAfter) reads, resumed at \(at)")
        }
        #expect(try await scriptDigest(url) == reference)
    }

    @Test("a checkpoint of a changed file, or one whose state claims more blocks than lie below it, is not used")
    func aCheckpointOfAChangedFileOrAForgedStateIsNotUsed() async throws {
        let dir = try Scratch()
        let url = try await segmentedFile(in: dir)
        let checkpoints = MemoryCheckpoints()
        let saving = HashCheckpointing(checkpoints: checkpoints, name: "source", segmentBytes: 4 << 20)
        let cut = ResumableSHA256Tests.CutAfter(30)
        #expect(throws: CancellationError.self) {
            _ = try SparseDigest.sha256(of: url, isCancelled: { cut.reached }, checkpointing: saving)
        }
        let saved = try #require(try checkpoints.load("source"))
        // Changed after the checkpoint (same size, one byte in the covered part).
        try write(Data([0xff]), to: url, at: 5)
        let afterChange = try SparseDigest.sha256(of: url, isCancelled: { false }, checkpointing: saving)
        #expect(afterChange.resumedAt == nil)
        #expect(afterChange.hex == (try SparseDigest.sha256(of: url)))

        // The state of the first blocks, claimed for the file's current identity at offset 4 KiB.
        var forged = try JSONDecoder().decode(HashCheckpoint.self, from: Data(saved.utf8))
        let file = try FileHandle(forReadingFrom: url)
        forged.file = try HashCheckpoint.identity(of: file.fileDescriptor, path: url.path)
        try file.close()
        forged.offset = 4096
        try checkpoints.save("source", String(decoding: try JSONEncoder().encode(forged), as: UTF8.self))
        let afterForgery = try SparseDigest.sha256(of: url, isCancelled: { false }, checkpointing: saving)
        #expect(afterForgery.resumedAt == nil)
        #expect(afterForgery.hex == afterChange.hex)
    }

}
