import Foundation
import Testing
import TestSupport
@testable import Stages

@Suite("FileDigest", .serialized)
struct FileDigestTests {
    @Test("whole-file SHA-256 and SHA-1 agree with coreutils", arguments: [0, 1, 4095, 4096, FileDigest.bufferSize, FileDigest.bufferSize + 12_345, 2 * FileDigest.bufferSize + 1])
    func wholeFile(size: Int) async throws {
        let dir = try Scratch()
        let file = dir.file("data.bin")
        try TestImageFactory.writeRandom(at: file, bytes: size)
        #expect(try await FileDigest.sha256(of: file) == TestImageFactory.referenceDigest("sha256sum", of: file))
        #expect(try await FileDigest.hash(.sha1, of: file) == TestImageFactory.referenceDigest("sha1sum", of: file))
    }

    @Test("a byte range hashes exactly that range")
    func byteRange() async throws {
        let dir = try Scratch()
        let file = dir.file("data.bin")
        let size = FileDigest.bufferSize + 100_000
        try TestImageFactory.writeRandom(at: file, bytes: size)
        let data = try Data(contentsOf: file)
        for (offset, length) in [(0, 0), (512, 1024), (7, FileDigest.bufferSize + 3), (size - 10, 10)] {
            let slice = dir.file("slice-\(offset)-\(length)")
            try data.subdata(in: offset..<(offset + length)).write(to: slice)
            #expect(try await FileDigest.hash(.sha256, of: file, offset: UInt64(offset), length: UInt64(length))
                    == TestImageFactory.referenceDigest("sha256sum", of: slice))
        }
        // Offset with no length: to the end of the file.
        let tail = dir.file("tail")
        try data.subdata(in: 1000..<size).write(to: tail)
        #expect(try await FileDigest.hash(.sha256, of: file, offset: 1000) == TestImageFactory.referenceDigest(of: tail))
    }

    @Test("a range past the end names the file")
    func rangePastEnd() throws {
        let dir = try Scratch()
        let file = dir.file("short.bin")
        try TestImageFactory.writeRandom(at: file, bytes: 100)
        let error = #expect(throws: StageError.self) {
            try FileDigest.hash(.sha256, of: file, offset: 50, length: 51)
        }
        #expect(error?.file == file.path)
        #expect(error?.message.contains("past the end") == true)
        #expect(throws: StageError.self) { try FileDigest.sha256(of: dir.file("missing")) }
    }

    @Test("incremental context equals the one-shot digest")
    func incremental() async throws {
        let dir = try Scratch()
        let file = dir.file("data.bin")
        try TestImageFactory.writeRandom(at: file, bytes: 300_000)
        let data = try Data(contentsOf: file)
        let context = try SHA256Context()
        context.update(data.prefix(1))
        context.update(data.dropFirst(1).prefix(100_000))
        data.dropFirst(100_001).withUnsafeBytes { context.update($0) }
        #expect(context.finalize() == (try await TestImageFactory.referenceDigest(of: file)))
        #expect(try SHA256Context().finalize() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }
}
