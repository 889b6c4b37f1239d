import Foundation
import Synchronization
import Testing
import TestSupport
@testable import Stages

/// Collects progress reports from qemu-img's reader thread.
private final class ProgressLog: Sendable {
    private let values = Mutex<[Double]>([])
    func record(_ value: Double) { values.withLock { $0.append(value) } }
    var all: [Double] { values.withLock { $0 } }
}

@Suite("QemuImg", .serialized)
struct QemuImgTests {
    let qemuImg = QemuImg()

    /// Input variants converted from the ext4 disk, as the pipeline receives them.
    static let variants: [TestImageFactory.ImageVariant] = [
        .raw, .qcow2, .vhd, .vhdx, .vmdkMonolithicSparse, .vmdkStreamOptimized,
    ]

    private func sourceDisk(in directory: Scratch) async throws -> URL {
        let raw = directory.file("fs.raw")
        try await OutputTestImages.makeFilesystemDisk(at: raw, scratch: directory.url)
        return raw
    }

    @Test("every input format converts to qcow2 and compressed qcow2 with identical content",
          .tags(.slow), .notInQuickRun, arguments: QemuImgTests.variants, [false, true])
    func convertsEveryFormat(variant: TestImageFactory.ImageVariant, compress: Bool) async throws {
        let directory = try Scratch()
        let raw = try await sourceDisk(in: directory)
        let input = directory.file("input.\(variant.fileExtension)")
        if variant == .raw {
            try FileManager.default.copyItem(at: raw, to: input)
        } else {
            try await TestImageFactory.convert(raw, to: variant, at: input)
        }
        let inputDigest = try await TestImageFactory.referenceDigest(of: input)
        let output = directory.file("out.qcow2")
        let log = ProgressLog()

        let summary = try await qemuImg.convert(from: input.path, sourceFormat: variant.qemuFormat, to: output,
                                                outputFormat: "qcow2", compress: compress, compressLevel: 3,
                                                progress: { log.record($0) })

        #expect(try await qemuImg.compare(raw.path, format: "raw", output.path, format: "qcow2"))
        #expect(try await qemuImg.compare(input.path, format: variant.qemuFormat, output.path, format: "qcow2"))
        let info = try await qemuImg.info(output.path, format: "qcow2")
        #expect(info.format == "qcow2")
        #expect(info.compat == "1.1")
        #expect(info.backingFilename == nil)
        #expect(info.virtualSize >= 32 << 20)
        #expect(try await qemuImg.check(output.path, format: "qcow2") == .clean)
        #expect(summary.compressionType == (compress ? "zstd" : nil))
        if compress { #expect(info.compressionType == "zstd") }

        let values = log.all
        #expect(!values.isEmpty)
        #expect(values.last == 1)
        #expect(zip(values, values.dropFirst()).allSatisfy { $0 < $1 }, "\(values)")
        #expect(try await TestImageFactory.referenceDigest(of: input) == inputDigest, "the source must not change")
    }

    @Test("a qcow2 snapshot chain is flattened into a standalone image")
    func flattensOverlayChain() async throws {
        let directory = try Scratch()
        let raw = try await sourceDisk(in: directory)
        let base = directory.file("base.qcow2")
        try await TestImageFactory.convert(raw, to: .qcow2, at: base)
        let middle = directory.file("middle.qcow2")
        let top = directory.file("top.qcow2")
        try await qemuImg.createOverlay(backing: base.path, backingFormat: "qcow2", at: middle)
        try await TestImageFactory.run("qemu-io", ["-f", "qcow2", "-c", "write -P 0xab 1M 64k", middle.path])
        try await qemuImg.createOverlay(backing: middle.path, backingFormat: "qcow2", at: top)
        try await TestImageFactory.run("qemu-io", ["-f", "qcow2", "-c", "write -P 0xcd 30M 128k", top.path])
        let topInfo = try await qemuImg.info(top.path)
        #expect(topInfo.backingFilename == middle.path)
        #expect(topInfo.backingFormat == "qcow2")
        let baseDigest = try await TestImageFactory.referenceDigest(of: base)

        let output = directory.file("flat.qcow2")
        try await qemuImg.convert(from: top.path, sourceFormat: "qcow2", to: output, outputFormat: "qcow2")

        #expect(try await qemuImg.info(output.path).backingFilename == nil)
        #expect(try await qemuImg.compare(top.path, format: "qcow2", output.path, format: "qcow2"))
        #expect(try await !qemuImg.compare(base.path, format: "qcow2", output.path, format: "qcow2"))
        // The overlay writes are in the output even once the chain is gone.
        try FileManager.default.removeItem(at: top)
        try FileManager.default.removeItem(at: middle)
        let read = try await TestImageFactory.run("qemu-io", ["-f", "qcow2", "-r", "-c", "read -P 0xcd 30M 128k",
                                                        "-c", "read -P 0xab 1M 64k", output.path])
        #expect(!read.contains("Pattern verification failed"), "\(read)")
        #expect(try await TestImageFactory.referenceDigest(of: base) == baseDigest)
    }

    @Test("an OVA member is converted in place through a json: spec")
    func convertsJSONSpec() async throws {
        let directory = try Scratch()
        let raw = try await sourceDisk(in: directory)
        let vmdk = directory.file("disk.vmdk")
        try await TestImageFactory.convert(raw, to: .vmdkStreamOptimized, at: vmdk)
        let archive = directory.file("vm.ova")
        try await TestImageFactory.makeTar(at: archive, from: directory.url, members: ["disk.vmdk"])
        // ustar: one 512-byte header, then the member's data.
        let size = try #require(try FileManager.default.attributesOfItem(atPath: vmdk.path)[.size] as? NSNumber)
        let spec = "json:{\"driver\":\"vmdk\",\"file\":{\"driver\":\"raw\",\"offset\":512,\"size\":\(size.uint64Value),"
            + "\"file\":{\"driver\":\"file\",\"filename\":\"\(archive.path)\"}}}"
        let output = directory.file("out.qcow2")
        try await qemuImg.convert(from: spec, sourceFormat: "vmdk", to: output, outputFormat: "qcow2")
        #expect(try await qemuImg.compare(raw.path, format: "raw", output.path, format: "qcow2"))

        // The same through a pinned DiskLocator.
        let member = try PinnedImage.open(DiskLocator(path: archive.path, format: "vmdk", offset: 512, length: size.uint64Value))
        let viaLocator = directory.file("locator.qcow2")
        try await qemuImg.convert(from: member, to: viaLocator, outputFormat: "qcow2")
        #expect(try await qemuImg.compare(member, try PinnedImage.open(DiskLocator(path: viaLocator.path, format: "qcow2"))))
        #expect(try await qemuImg.info(member.spec, format: "vmdk").createType == "streamOptimized")

        // The guest-fix overlay over the same spec reads the same content.
        let overlay = directory.file("overlay.qcow2")
        try await qemuImg.createOverlay(backing: spec, backingFormat: "vmdk", at: overlay)
        #expect(try await qemuImg.compare(raw.path, format: "raw", overlay.path, format: "qcow2"))
    }

    @Test("raw output, and compression refused for it")
    func rawOutput() async throws {
        let directory = try Scratch()
        let raw = try await sourceDisk(in: directory)
        let vhdx = directory.file("in.vhdx")
        try await TestImageFactory.convert(raw, to: .vhdx, at: vhdx)
        let output = directory.file("out.raw")
        try await qemuImg.convert(from: vhdx.path, sourceFormat: "vhdx", to: output, outputFormat: "raw")
        #expect(try await qemuImg.compare(raw.path, format: "raw", output.path, format: "raw"))
        await #expect(throws: StageError.self) {
            try await qemuImg.convert(from: vhdx.path, sourceFormat: "vhdx", to: directory.file("c.raw"),
                                      outputFormat: "raw", compress: true)
        }
    }

    @Test("a compression level qemu-img cannot set is reported, not silently claimed")
    func compressionLevelNote() async throws {
        let directory = try Scratch()
        let raw = try await sourceDisk(in: directory)
        let output = directory.file("out.qcow2")
        let summary = try await qemuImg.convert(from: raw.path, sourceFormat: "raw", to: output, outputFormat: "qcow2",
                                                compress: true, compressLevel: 19)
        #expect(summary.compressionLevel == QemuImg.zstdLevel)
        #expect(summary.note?.contains("19") == true)
        let atDefault = try await qemuImg.convert(from: raw.path, sourceFormat: "raw", to: directory.file("d.qcow2"),
                                                  outputFormat: "qcow2", compress: true, compressLevel: QemuImg.zstdLevel)
        #expect(atDefault.note == nil)
        // Same bytes for both levels: proof that no level reached qemu.
        let first = try await TestImageFactory.referenceDigest(of: output)
        let second = try await TestImageFactory.referenceDigest(of: directory.file("d.qcow2"))
        #expect(first == second)
    }

    @Test("compare tells different images apart")
    func compareDetectsDifference() async throws {
        let directory = try Scratch()
        let raw = try await sourceDisk(in: directory)
        let copy = directory.file("copy.raw")
        try FileManager.default.copyItem(at: raw, to: copy)
        #expect(try await qemuImg.compare(raw.path, format: "raw", copy.path, format: "raw"))
        try await TestImageFactory.run("dd", ["if=/dev/urandom", "of=\(copy.path)", "bs=4k", "seek=7000", "count=1",
                                        "conv=notrunc", "status=none"])
        #expect(try await !qemuImg.compare(raw.path, format: "raw", copy.path, format: "raw"))
        await #expect(throws: StageError.self) {
            try await qemuImg.compare(directory.file("missing.raw").path, format: "raw", copy.path, format: "raw")
        }
    }

    @Test("check reports corruption and unsupported formats")
    func checkOutcomes() async throws {
        let directory = try Scratch()
        let raw = try await sourceDisk(in: directory)
        let vhd = directory.file("d.vhd")
        try await TestImageFactory.convert(raw, to: .vhd, at: vhd)
        #expect(try await qemuImg.check(vhd.path, format: "vpc") == .unsupported)
        let qcow2 = directory.file("d.qcow2")
        try await TestImageFactory.convert(raw, to: .qcow2, at: qcow2)
        // Zero the refcount table offset in the qcow2 header: the image can no longer be trusted.
        let handle = try FileHandle(forUpdating: qcow2)
        try handle.seek(toOffset: 0x30)
        try handle.write(contentsOf: Data([0, 0, 0, 0, 0, 0, 0, 0]))
        try handle.close()
        let outcome = try? await qemuImg.check(qcow2.path, format: "qcow2")
        #expect(outcome != .clean)
    }

    @Test("a full destination filesystem is a no-space error naming the output")
    func noSpace() async throws {
        let directory = try Scratch()
        let raw = try await sourceDisk(in: directory)
        let mountPoint = try directory.subdirectory("small")
        let (mounted, message) = try await OutputTestImages.status("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mountPoint.path])
        try #require(mounted == 0, "needs root to mount a tmpfs: \(message)")
        defer { _ = try? shBlocking(["umount", mountPoint.path], allowFailure: true) }
        let output = mountPoint.appendingPathComponent("out.qcow2")
        do {
            try await qemuImg.convert(from: raw.path, sourceFormat: "raw", to: output, outputFormat: "qcow2")
            Issue.record("convert into a 2 MiB filesystem succeeded")
        } catch let error as StageError {
            #expect(error.code == .noSpace, "\(error)")
            #expect(error.file == output.path)
        }
    }

    @Test("a missing source is a tool failure naming the output")
    func missingSource() async throws {
        let directory = try Scratch()
        await #expect(throws: StageError.self) {
            try await qemuImg.convert(from: directory.file("nope.vmdk").path, sourceFormat: "vmdk",
                                      to: directory.file("o.qcow2"), outputFormat: "qcow2")
        }
    }

    @Test("info reads vmdk details")
    func infoDetails() async throws {
        let directory = try Scratch()
        let raw = try await sourceDisk(in: directory)
        let vmdk = directory.file("d.vmdk")
        try await TestImageFactory.convert(raw, to: .vmdkStreamOptimized, at: vmdk)
        let info = try await qemuImg.info(vmdk.path)
        #expect(info.format == "vmdk")
        #expect(info.createType == "streamOptimized")
        #expect(info.virtualSize == 32 << 20)
    }

    @Test("version names the qemu-img release")
    func version() async throws {
        let version = try await qemuImg.version()
        #expect(version.first?.isNumber == true, "\(version)")
    }
}

@Suite("QemuProgressParser")
struct QemuProgressParserTests {
    @Test("parses reports split across reads")
    func splitChunks() {
        var parser = QemuProgressParser()
        #expect(parser.consume("    (0.00/100%)\r    (12.") == [0])
        #expect(parser.consume("34/100%)\r") == [0.1234])
        #expect(parser.consume("    (100.00/100%)\r\n") == [1])
        #expect(parser.consume("garbage without markers") == [])
    }

    @Test("ignores malformed numbers and clamps")
    func malformed() {
        var parser = QemuProgressParser()
        #expect(parser.consume("(abc/100%)(150.0/100%)") == [1])
    }
}
