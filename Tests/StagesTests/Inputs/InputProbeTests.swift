import Foundation
import Testing
import TestSupport
@testable import Stages

@Suite("InputProbe", .serialized)
struct InputProbeTests {
    typealias Variant = TestImageFactory.ImageVariant

    static func expectedKind(_ variant: Variant) -> InputKind {
        switch variant {
        case .raw: .raw
        case .qcow2: .qcow2
        case .vhd: .vhd
        case .vhdx: .vhdx
        default: .vmdk
        }
    }

    @Test("every real image format is identified and inspected", arguments: Variant.allCases)
    func identifiesAndInspects(variant: Variant) async throws {
        let dir = try Scratch()
        let image = try await TestImageFactory.makeImage(variant, in: dir.url)
        let before = try FileDigest.sha256(of: image)
        let kind = try InputProbe.identify(image)
        #expect(kind == Self.expectedKind(variant))
        let info = try await InputProbe.inspectImage(DiskLocator(path: image.path, format: variant.qemuFormat))
        #expect(info.format == variant.qemuFormat)
        #expect(info.virtualSize >= 32 << 20)
        switch variant {
        case .vmdkMonolithicSparse: #expect(info.createType == "monolithicSparse")
        case .vmdkStreamOptimized: #expect(info.createType == "streamOptimized")
        case .vmdkMonolithicFlat: #expect(info.createType == "monolithicFlat")
        case .vmdkTwoGbMaxExtentSparse: #expect(info.createType == "twoGbMaxExtentSparse")
        default: break
        }
        #expect(try FileDigest.sha256(of: image) == before)
    }

    @Test("a zero-length file is refused by name")
    func zeroLength() throws {
        let dir = try Scratch()
        for name in ["empty.vmdk", "empty.raw", "empty.ova"] {
            let file = dir.file(name)
            try Data().write(to: file)
            let error = #expect(throws: StageError.self) { try InputProbe.identify(file) }
            #expect(error?.code == .badInput)
            #expect(error?.file == file.path)
            #expect(error?.message.contains("empty file (0 bytes)") == true)
        }
    }

    @Test("random bytes named after an image format are refused")
    func randomBytes() throws {
        let dir = try Scratch()
        for (name, expected) in [("random.vmdk", "not a VMDK image"), ("random.qcow2", "not a qcow2 image"),
                                 ("random.vhdx", "not a VHDX image"), ("random.vhd", "not a VHD image"),
                                 ("random.ova", "not an OVA"), ("random.ovf", "not an OVF descriptor")] {
            let file = dir.file(name)
            try TestImageFactory.writeRandom(at: file, bytes: 1 << 20)
            let before = try FileDigest.sha256(of: file)
            let error = #expect(throws: StageError.self) { try InputProbe.identify(file) }
            #expect(error?.code == .badInput)
            #expect(error?.file == file.path)
            #expect(error?.message.contains(expected) == true, "\(name): \(String(describing: error))")
            #expect(try FileDigest.sha256(of: file) == before)
        }
        let odd = dir.file("odd.raw")
        try TestImageFactory.writeRandom(at: odd, bytes: 1000)
        let error = #expect(throws: StageError.self) { try InputProbe.identify(odd) }
        #expect(error?.message.contains("multiple of 512") == true)
    }

    @Test("content wins for generic .img names; unknown extensions are identified by content")
    func contentWins() async throws {
        let dir = try Scratch()
        let qcow2 = try await TestImageFactory.makeImage(.qcow2, in: dir.url, sizeMiB: 16, randomMiB: 1)
        let img = dir.file("cloud.img")
        try FileManager.default.copyItem(at: qcow2, to: img)
        #expect(try InputProbe.identify(img) == .qcow2)
        let blob = dir.file("disk.bin")
        try FileManager.default.copyItem(at: qcow2, to: blob)
        #expect(try InputProbe.identify(blob) == .qcow2)
        let ovf = dir.file("vm.ovf")
        try OVFFixtures.vmware(disks: [.init(href: "a.vmdk")]).write(to: ovf, atomically: true, encoding: .utf8)
        #expect(try InputProbe.identify(ovf) == .ovf)
    }

    /// Cuts `bytes` off the end (or half the file when nil) of a copy of `image`.
    private func truncatedCopy(of image: URL, in dir: Scratch, cutting bytes: UInt64?) async throws -> URL {
        let copy = dir.file("cut-\(bytes.map(String.init) ?? "half")-" + image.lastPathComponent)
        try FileManager.default.copyItem(at: image, to: copy)
        let size = try VMDKDescriptor.fileSize(copy)
        let newSize = bytes.map { size - $0 } ?? size / 2
        try await TestImageFactory.run("truncate", ["-s", "\(newSize)", copy.path])
        return copy
    }

    @Test("truncated images are refused, whatever the cut", arguments: [Variant.vmdkMonolithicSparse, .vmdkStreamOptimized, .vhdx, .qcow2, .vhd, .vmdkMonolithicFlat])
    func truncated(variant: Variant) async throws {
        let dir = try Scratch()
        let image = try await TestImageFactory.makeImage(variant, in: dir.url)
        // monolithicFlat: the data lives in the -flat extent, which is what gets cut.
        let target = variant == .vmdkMonolithicFlat ? dir.file("disk-flat.vmdk") : image
        for cut: UInt64? in [512, 65536, nil] {
            let copy: URL
            let probed: URL
            if variant == .vmdkMonolithicFlat {
                let sub = try dir.subdirectory("cut\(cut.map(String.init) ?? "half")")
                try FileManager.default.copyItem(at: image, to: sub.appendingPathComponent("disk.vmdk"))
                try FileManager.default.copyItem(at: target, to: sub.appendingPathComponent("disk-flat.vmdk"))
                copy = sub.appendingPathComponent("disk-flat.vmdk")
                let size = try VMDKDescriptor.fileSize(copy)
                try await TestImageFactory.run("truncate", ["-s", "\(cut.map { size - $0 } ?? size / 2)", copy.path])
                probed = sub.appendingPathComponent("disk.vmdk")
            } else {
                copy = try await truncatedCopy(of: target, in: dir, cutting: cut)
                probed = copy
            }
            let before = try FileDigest.sha256(of: copy)
            await #expect(throws: StageError.self, "\(variant) cut \(String(describing: cut))") {
                // identify may already refuse (VHD footer); otherwise inspection must.
                let kind = try InputProbe.identify(probed)
                _ = try await InputProbe.inspectImage(DiskLocator(path: probed.path, format: SourceReader.qemuFormat(of: kind)))
            }
            do {
                let kind = try InputProbe.identify(probed)
                _ = try await InputProbe.inspectImage(DiskLocator(path: probed.path, format: SourceReader.qemuFormat(of: kind)))
            } catch let error as StageError {
                #expect(error.code == .badInput)
                #expect(error.file == copy.path || error.file == probed.path, "\(error)")
                #expect(error.message.lowercased().contains("truncated") || error.message.contains("after end of file")
                        || error.message.contains("points after") || error.message.contains("corrupt"),
                        "\(variant) cut \(String(describing: cut)): \(error)")
            }
            #expect(try FileDigest.sha256(of: copy) == before)
        }
    }

    @Test("the pinned spec of an archive member is readable by qemu-img info and convert")
    func pinnedSpecInPlace() async throws {
        let dir = try Scratch()
        let raw = dir.file("source.raw")
        try await TestImageFactory.makeRaw(at: raw, sizeMiB: 16, randomMiB: 2)
        let vmdk = dir.file("disk1.vmdk")
        try await TestImageFactory.convert(raw, to: .vmdkStreamOptimized, at: vmdk)
        try "padding member\n".write(to: dir.file("notes.txt"), atomically: true, encoding: .utf8)
        let archive = dir.file("pack.tar")
        try await TestImageFactory.makeTar(at: archive, from: dir.url, members: ["notes.txt", "disk1.vmdk"])
        let member = try #require(try TarArchiveReader(url: archive).members().first { $0.name == "disk1.vmdk" })
        let locator = DiskLocator(path: archive.path, format: "vmdk", offset: member.dataOffset, length: member.size)
        let pinned = try PinnedImage.open(locator)
        #expect(pinned.spec.hasPrefix("json:{"))
        let info = try await InputProbe.inspectImage(locator)
        #expect(info.virtualSize == 16 << 20)
        #expect(info.storedSize == member.size)
        let out = dir.file("out.raw")
        try await TestImageFactory.run("qemu-img", ["convert", "-f", "vmdk", "-O", "raw", pinned.spec, out.path])
        try await TestImageFactory.run("qemu-img", ["compare", "-f", "raw", "-F", "raw", raw.path, out.path])
    }

    @Test("a qcow2 whose backing file lies outside its directory is refused")
    func hostileBackingFile() async throws {
        let dir = try Scratch()
        let outside = try dir.subdirectory("outside")
        let base = outside.appendingPathComponent("base.raw")
        try await TestImageFactory.makeRaw(at: base, sizeMiB: 16, randomMiB: 1)
        let inside = try dir.subdirectory("inside")
        let overlay = inside.appendingPathComponent("top.qcow2")
        try await TestImageFactory.run("qemu-img", ["create", "-f", "qcow2", "-F", "raw", "-b", base.path, overlay.path])
        let error = await #expect(throws: StageError.self) {
            _ = try await InputProbe.inspectImage(DiskLocator(path: overlay.path, format: "qcow2"))
        }
        #expect(error?.file == overlay.path)
        #expect(error?.message.contains("backing file") == true, "\(String(describing: error))")
    }

    @Test("a qcow2 made by qemu-img convert -c (file ends inside its last compressed cluster) is accepted; one cut by a cluster is not")
    func compressedQcow2EndsInsideItsLastCluster() async throws {
        let dir = try Scratch()
        let raw = dir.file("text.raw")
        // Compressible content, so the last compressed cluster ends well inside its host cluster.
        try Data(String(repeating: "hyper2kvm compressible line\n", count: 300_000).utf8).write(to: raw)
        try await TestImageFactory.run("truncate", ["-s", "16M", raw.path])
        for compression in ["zlib", "zstd"] {
            let image = dir.file("c-\(compression).qcow2")
            try await TestImageFactory.run("qemu-img", ["convert", "-q", "-c", "-f", "raw", "-O", "qcow2",
                                                  "-o", "compression_type=\(compression)", raw.path, image.path])
            let info = try await InputProbe.inspectImage(DiskLocator(path: image.path, format: "qcow2"))
            #expect(info.virtualSize == 16 << 20)
            let size = try #require(try FileManager.default.attributesOfItem(atPath: image.path)[.size] as? NSNumber).uint64Value
            try await TestImageFactory.run("truncate", ["-s", "\(size - 65536)", image.path])
            await #expect(throws: StageError.self) {
                try await InputProbe.inspectImage(DiskLocator(path: image.path, format: "qcow2"))
            }
        }
    }

    @Test("a new, empty qcow2 (file ends inside its L1 table) is accepted; one cut inside the L1 table is not")
    func freshEmptyQcow2() async throws {
        let dir = try Scratch()
        let image = dir.file("new.qcow2")
        try await TestImageFactory.run("qemu-img", ["create", "-q", "-f", "qcow2", image.path, "1G"])
        let info = try await InputProbe.inspectImage(DiskLocator(path: image.path, format: "qcow2"))
        #expect(info.virtualSize == 1 << 30)

        let size = try #require(try FileManager.default.attributesOfItem(atPath: image.path)[.size] as? NSNumber).uint64Value
        try await TestImageFactory.run("truncate", ["-s", "\(size - 8)", image.path])
        let error = await #expect(throws: StageError.self) {
            try await InputProbe.inspectImage(DiskLocator(path: image.path, format: "qcow2"))
        }
        #expect(error?.message.contains("truncated") == true, "\(String(describing: error))")
    }
}
