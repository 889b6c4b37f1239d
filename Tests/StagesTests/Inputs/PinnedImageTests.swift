import Foundation
import Testing
import TestSupport
@testable import Stages

/// Images that name other files: qemu must read only what we opened and validated. Each test
/// plants a host file with a marker and checks the marker never reaches a decoded output.
@Suite("PinnedImage", .serialized)
struct PinnedImageTests {
    /// A planted host file: 256 KiB of a marker line, outside the image's directory.
    struct Secret {
        let url: URL
        let marker: String

        init(in directory: URL) throws {
            marker = "H2K-SECRET-\(UUID().uuidString)"
            url = directory.appendingPathComponent("secret.bin")
            let line = String(repeating: marker + "\n", count: 4)
            let block = String(repeating: line, count: (256 << 10) / line.utf8.count + 1)
            try Data(block.utf8.prefix(256 << 10)).write(to: url)
        }

        /// The decoded guest content of `image` (converted to raw by qemu-img) holds no marker byte run.
        func expectAbsent(fromImage image: URL, format: String, in directory: URL) async throws {
            let raw = directory.appendingPathComponent("decoded-\(UUID().uuidString.prefix(6)).raw")
            try await TestImageFactory.run("qemu-img", ["convert", "-f", format, "-O", "raw", image.path, raw.path])
            let bytes = try Data(contentsOf: raw)
            #expect(bytes.range(of: Data(marker.utf8)) == nil, "the planted host file leaked into \(image.lastPathComponent)")
            try? FileManager.default.removeItem(at: raw)
        }
    }

    /// Probes `image`, and when it is accepted converts it through the pinned spec and checks the output.
    func probeAndConvert(_ image: URL, format: String, secret: Secret, in directory: URL) async throws -> StageError? {
        let locator = DiskLocator(path: image.path, format: format)
        do {
            _ = try await InputProbe.inspectImage(locator)
            let pinned = try PinnedImage.open(locator)
            let output = directory.appendingPathComponent("out-\(UUID().uuidString.prefix(6)).qcow2")
            try await QemuImg().convert(from: pinned, to: output, outputFormat: "qcow2")
            try await secret.expectAbsent(fromImage: output, format: "qcow2", in: directory)
            return nil
        } catch let error as StageError {
            return error
        }
    }

    @Test("a qcow2 declaring an external data file is refused before qemu opens it: absolute, relative, sibling symlink, FIFO",
          arguments: ["absolute", "relative", "symlink", "fifo"])
    func dataFile(variant: String) async throws {
        let dir = try Scratch()
        let secret = try Secret(in: try dir.subdirectory("host"))
        let queue = try dir.subdirectory("queue")
        let image = queue.appendingPathComponent("evil.qcow2")
        let target: String
        switch variant {
        case "absolute": target = secret.url.path
        case "relative": target = "../host/secret.bin"
        case "symlink":
            try FileManager.default.createSymbolicLink(at: queue.appendingPathComponent("data.raw"), withDestinationURL: secret.url)
            target = "data.raw"
        default:
            #expect(mkfifo(queue.appendingPathComponent("pipe").path, 0o600) == 0)
            target = "pipe"
        }
        // Made on a harmless file, then pointed at the target with -u semantics (amend does not open it).
        let harmless = queue.appendingPathComponent("harmless.raw")
        try await TestImageFactory.run("truncate", ["-s", "1M", harmless.path])
        try await TestImageFactory.run("qemu-img", ["create", "-q", "-f", "qcow2", "-o", "data_file=\(harmless.path),data_file_raw=on",
                                              image.path, "1M"])
        try await TestImageFactory.run("qemu-img", ["amend", "-f", "qcow2", "-o", "data_file=\(target)", image.path])
        try FileManager.default.removeItem(at: harmless)
        // Refused by our header check, not ended by the probe's wall clock (a FIFO would block
        // qemu until then, and the message would say so).
        let error = try await probeAndConvert(image, format: "qcow2", secret: secret, in: dir.url)
        #expect(error?.code == .badInput)
        #expect(error?.file == image.path)
        #expect(error?.message.contains("external data file") == true, "\(String(describing: error))")
    }

    @Test("a qcow2 backing name that qemu would read as a protocol or a host path never reaches qemu",
          arguments: ["nbd:127.0.0.1:9", "json:{\"driver\":\"file\",\"filename\":\"SECRET\"}", "file:SECRET", "SECRET", "../host/secret.bin"])
    func backingNames(name: String) async throws {
        let dir = try Scratch()
        let secret = try Secret(in: try dir.subdirectory("host"))
        let queue = try dir.subdirectory("queue")
        let backing = name.replacingOccurrences(of: "SECRET", with: secret.url.path)
        // A decoy beside the image under the same name, where that name is a plain file name.
        if !backing.contains("/") {
            try await TestImageFactory.run("truncate", ["-s", "1M", queue.appendingPathComponent(backing).path])
        }
        let image = queue.appendingPathComponent("top.qcow2")
        try await TestImageFactory.run("qemu-img", ["create", "-q", "-f", "qcow2", "-u", "-b", backing, "-F", "raw", image.path, "1M"])
        let error = try await probeAndConvert(image, format: "qcow2", secret: secret, in: dir.url)
        if let error {
            #expect(error.code == .badInput, "\(error)")
            #expect(error.file == image.path, "\(error)")
        }
    }

    @Test("a qcow2 chain of plain siblings is pinned link by link and converts to the same content")
    func validChain() async throws {
        let dir = try Scratch()
        let secret = try Secret(in: dir.url)
        let raw = dir.file("content.raw")
        try await TestImageFactory.makeRaw(at: raw, sizeMiB: 8, randomMiB: 1)
        let base = dir.file("base.qcow2")
        try await TestImageFactory.run("qemu-img", ["convert", "-q", "-f", "raw", "-O", "qcow2", raw.path, base.path])
        let top = dir.file("top.qcow2")
        try await TestImageFactory.run("qemu-img", ["create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top.path])
        let info = try await InputProbe.inspectImage(DiskLocator(path: top.path, format: "qcow2"))
        #expect(info.backingFile == "base.qcow2")
        let pinned = try PinnedImage.open(DiskLocator(path: top.path, format: "qcow2"))
        #expect(pinned.links.count == 2)
        #expect(!pinned.spec.contains("base.qcow2"), "qemu must get descriptors, not the name")
        let output = dir.file("flat.qcow2")
        try await QemuImg().convert(from: pinned, to: output, outputFormat: "qcow2")
        try await TestImageFactory.run("qemu-img", ["compare", "-f", "raw", "-F", "qcow2", raw.path, output.path])
        try await secret.expectAbsent(fromImage: output, format: "qcow2", in: dir.url)
    }

    @Test("a VMDK descriptor reaches qemu only as our copy: split extent lines, absolute, relative and descriptor-number names",
          arguments: [
            "RW 2048 FLAT\n\"SECRET\" 0",
            "RW\n2048\nFLAT\n\"SECRET\"\n0",
            "RW 2048 FLAT \"SECRET\" 0",
            "RW 2048 FLAT \"../host/secret.bin\" 0",
            "RW 2048 FLAT \"3\" 0",
            "\nRW 2048 FLAT \"flat.bin\" 0\nRW 512 FLAT \"SECRET\" 0",
          ])
    func descriptorExtents(extentLines: String) async throws {
        let dir = try Scratch()
        let secret = try Secret(in: try dir.subdirectory("host"))
        let queue = try dir.subdirectory("queue")
        try await TestImageFactory.run("truncate", ["-s", "1M", queue.appendingPathComponent("flat.bin").path])
        let text = "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n"
            + extentLines.replacingOccurrences(of: "SECRET", with: secret.url.path) + "\n"
        let image = queue.appendingPathComponent("evil.vmdk")
        try text.write(to: image, atomically: true, encoding: .utf8)
        let error = try await probeAndConvert(image, format: "vmdk", secret: secret, in: dir.url)
        #expect(error?.code == .badInput, "\(String(describing: error))")
    }

    @Test("an extent swapped for a symlink to a host file after it was checked is not what qemu reads")
    func swappedAfterCheck() async throws {
        let dir = try Scratch()
        let secret = try Secret(in: try dir.subdirectory("host"))
        let queue = try dir.subdirectory("queue")
        let raw = dir.file("content.raw")
        try await TestImageFactory.makeRaw(at: raw, sizeMiB: 1, randomMiB: 1)
        let image = queue.appendingPathComponent("disk.vmdk")
        try await TestImageFactory.run("qemu-img", ["convert", "-q", "-f", "raw", "-O", "vmdk", "-o", "subformat=monolithicFlat",
                                              raw.path, image.path])
        let pinned = try PinnedImage.open(DiskLocator(path: image.path, format: "vmdk"))
        _ = try await pinned.verifiedByQemu()
        // The attacker wins the race: the checked extent's name now points at the host file.
        let extent = queue.appendingPathComponent("disk-flat.vmdk")
        try FileManager.default.removeItem(at: extent)
        try FileManager.default.createSymbolicLink(at: extent, withDestinationURL: secret.url)
        let output = dir.file("out.qcow2")
        try await QemuImg().convert(from: pinned, to: output, outputFormat: "qcow2")
        withExtendedLifetime(pinned) {}
        try await TestImageFactory.run("qemu-img", ["compare", "-f", "raw", "-F", "qcow2", raw.path, output.path])
        try await secret.expectAbsent(fromImage: output, format: "qcow2", in: dir.url)
    }

    @Test("a disk replaced in the queue after the probe is refused by the later stages, which open it again")
    func replacedAfterProbe() async throws {
        let dir = try Scratch()
        let disk = dir.file("disk.raw")
        try await TestImageFactory.makeRaw(at: disk, sizeMiB: 1, randomMiB: 1)
        let info = try await InputProbe.inspectImage(DiskLocator(path: disk.path, format: "raw"))
        let identity = try #require(info.identity)
        _ = try PinnedImage.open(DiskLocator(path: disk.path, format: "raw"), expecting: identity)
        let other = dir.file("other.raw")
        try await TestImageFactory.makeRaw(at: other, sizeMiB: 1, randomMiB: 1)
        try FileManager.default.removeItem(at: disk)
        try FileManager.default.moveItem(at: other, to: disk)
        let error = #expect(throws: StageError.self) {
            _ = try PinnedImage.open(DiskLocator(path: disk.path, format: "raw"), expecting: identity)
        }
        #expect(error?.code == .sourceChanged)
    }

    @Test("a symlink or a FIFO given as the source itself is refused without blocking")
    func sourceNotRegular() async throws {
        let dir = try Scratch()
        let secret = try Secret(in: dir.url)
        let link = dir.file("link.raw")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: secret.url)
        let fifo = dir.file("pipe.qcow2")
        #expect(mkfifo(fifo.path, 0o600) == 0)
        for (file, format, words) in [(link, "raw", "symbolic link"), (fifo, "qcow2", "FIFO")] {
            let error = #expect(throws: StageError.self) { _ = try PinnedImage.open(DiskLocator(path: file.path, format: format)) }
            #expect(error?.message.contains(words) == true, "\(String(describing: error))")
        }
    }

    @Test("qemu's view is compared with ours: an extent we did not pin is refused")
    func crossCheck() throws {
        let link = PinnedImage.Link(format: "vmdk", tree: .file("/proc/1/fd/3"), pinnedNames: ["/proc/1/fd/3"], reportedBacking: nil)
        let good: [String: Any] = ["format": "vmdk", "format-specific": ["data": ["extents": [["filename": "/proc/1/fd/3"]]]]]
        try QemuView.compare(good, with: link, file: "x.vmdk")
        let foreign: [String: Any] = ["format": "vmdk", "format-specific": ["data": ["extents": [["filename": "/etc/shadow"]]]]]
        #expect(throws: StageError.self) { try QemuView.compare(foreign, with: link, file: "x.vmdk") }
        let backing: [String: Any] = ["format": "vmdk", "backing-filename": "nbd:127.0.0.1:1"]
        #expect(throws: StageError.self) { try QemuView.compare(backing, with: link, file: "x.vmdk") }
        let dataFile: [String: Any] = ["format": "vmdk", "format-specific": ["data": ["data-file": "/etc/shadow"]]]
        #expect(throws: StageError.self) { try QemuView.compare(dataFile, with: link, file: "x.vmdk") }
        let nested: [String: Any] = ["format": "vmdk", "format-specific": ["data": ["extents": [
            ["filename": "json:{\"driver\":\"nbd\",\"server\":{\"host\":\"127.0.0.1\"}}"]]]]]
        #expect(throws: StageError.self) { try QemuView.compare(nested, with: link, file: "x.vmdk") }
    }
}
