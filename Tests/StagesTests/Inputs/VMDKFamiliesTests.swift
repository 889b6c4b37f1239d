import Foundation
import Testing
import TestSupport
@testable import Stages

/// Every VMDK family a VMware product writes, made by qemu-img where it can write it, probed
/// and converted through the pinned path: the output must be identical to the source
/// (`qemu-img compare`), and a snapshot chain must flatten to its newest state.
@Suite("VMDK families", .serialized)
struct VMDKFamiliesTests {
    /// Writes distinct data at three offsets so a lost extent or a wrong chain shows up.
    static func fill(_ image: String, format: String, pattern: Int, at offsets: [String]) async throws {
        for offset in offsets {
            try await sh(["qemu-io", "-f", format, "-c", "write -P \(pattern) \(offset) 64k", image])
        }
    }

    /// Probes, converts through the pinned spec, and compares with the source as qemu reads it.
    static func convertAndCompare(_ image: URL, in directory: URL, qemuReadsSource: Bool = true) async throws -> ImageInfo {
        let locator = DiskLocator(path: image.path, format: "vmdk")
        let info = try await InputProbe.inspectImage(locator)
        let pinned = try PinnedImage.open(locator)
        let output = directory.appendingPathComponent("out-\(image.deletingPathExtension().lastPathComponent).qcow2")
        try await QemuImg().convert(from: pinned, to: output, outputFormat: "qcow2")
        withExtendedLifetime(pinned) {}
        guard qemuReadsSource else { return info }
        let compare = try await sh(["qemu-img", "compare", "-f", "vmdk", "-F", "qcow2", image.path, output.path], allowFailure: true)
        #expect(compare.status == 0, "\(image.lastPathComponent) converted differently: \(compare.out) \(compare.err)")
        return info
    }

    @Test("qemu-img's subformats convert identical to the source",
          arguments: ["monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat", "streamOptimized"])
    func subformat(_ subformat: String) async throws {
        let dir = try Scratch("vmdk-family-\(subformat)")
        let image = dir.path("disk.vmdk")
        // 5 GiB: the two-gigabyte families then have three extents; the data lands in the first and last.
        let offsets = ["0", "2147418112", "5368643584"]
        if subformat == "streamOptimized" {
            // streamOptimized is written once, by a convert (qemu cannot write into one afterwards).
            let raw = dir.path("seed.raw")
            try await sh(["qemu-img", "create", "-q", "-f", "raw", raw, "5G"])
            try await Self.fill(raw, format: "raw", pattern: 0x5a, at: offsets)
            try await sh(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, image])
            try FileManager.default.removeItem(atPath: raw)
        } else {
            try await sh(["qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=\(subformat)", image, "5G"])
            try await Self.fill(image, format: "vmdk", pattern: 0x5a, at: offsets)
        }
        let info = try await Self.convertAndCompare(URL(fileURLWithPath: image), in: dir.url)
        #expect(info.virtualSize == 5 << 30)
        if subformat.hasPrefix("twoGb") {
            #expect(dir.listing().filter { $0.hasPrefix("disk-") && $0.hasSuffix(".vmdk") }.count == 3, "\(dir.listing())")
        }
    }

    /// ESXi's own descriptor of a thick (`vmfs`) or thin disk: the shape of the descriptors in the
    /// public ESXi datastore listings and vmkfstools output (version, encoding, CID,
    /// isNativeSnapshot, a VMFS extent, the DDB with `ddb.thinProvisioned` for thin disks).
    static func esxiDescriptor(flat: String, sectors: Int, createType: String, thin: Bool) -> String {
        """
        # Disk DescriptorFile
        version=1
        encoding="UTF-8"
        CID=7ad1c2e3
        parentCID=ffffffff
        isNativeSnapshot="no"
        createType="\(createType)"

        # Extent description
        RW \(sectors) VMFS "\(flat)"

        # The Disk Data Base
        #DDB

        ddb.adapterType = "lsilogic"
        ddb.geometry.cylinders = "8"
        ddb.geometry.heads = "255"
        ddb.geometry.sectors = "63"
        ddb.longContentID = "4b7f0a1c2d3e4f5a6b7c8d9e7ad1c2e3"
        \(thin ? "ddb.thinProvisioned = \"1\"\n" : "")ddb.uuid = "60 00 C2 94 1f 6c 0e 5b-5d 2b 6e 0d 3f 9a 11 42"
        ddb.virtualHWVersion = "13"
        """
    }

    @Test("an ESXi vmfs / vmfsThin descriptor with its -flat.vmdk converts identical to the flat data",
          arguments: [("vmfs", false), ("vmfs", true), ("vmfsThin", true)])
    func vmfs(createType: String, thin: Bool) async throws {
        let dir = try Scratch("vmdk-family-\(createType)-\(thin)")
        let flat = dir.path("web01-flat.vmdk")
        try await sh(["qemu-img", "create", "-q", "-f", "raw", flat, "64M"])
        try await Self.fill(flat, format: "raw", pattern: 0x3c, at: ["0", "1m", "67043328"])
        try Self.esxiDescriptor(flat: "web01-flat.vmdk", sectors: 131072, createType: createType, thin: thin)
            .write(toFile: dir.path("web01.vmdk"), atomically: true, encoding: .utf8)
        // qemu cannot open `vmfsThin` itself (only our descriptor copy, which says `vmfs`): compared with the flat data below.
        _ = try await Self.convertAndCompare(dir.file("web01.vmdk"), in: dir.url, qemuReadsSource: createType != "vmfsThin")
        let raw = dir.path("check.raw")
        try await sh(["qemu-img", "convert", "-O", "raw", dir.path("out-web01.qcow2"), raw])
        let same = try await sh(["cmp", raw, flat], allowFailure: true)
        #expect(same.status == 0, "the converted vmfs disk differs from its flat extent")
    }

    /// base (monolithicFlat) ← x-000001 (monolithicSparse) ← x-000002 (descriptor + sparse extent),
    /// made as `qemu-img create -b` makes them, each written to before its child exists.
    static func makeChain(in dir: Scratch) async throws {
        try await sh(["qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", "x.vmdk", "8M"], in: dir.url)
        try await Self.fill(dir.path("x.vmdk"), format: "vmdk", pattern: 0x11, at: ["0", "1m", "2m"])
        try await sh(["qemu-img", "create", "-q", "-f", "vmdk", "-b", "x.vmdk", "-F", "vmdk", "x-000001.vmdk"], in: dir.url)
        try await Self.fill(dir.path("x-000001.vmdk"), format: "vmdk", pattern: 0x22, at: ["1m", "2m"])
        try await sh(["qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse",
                      "-b", "x-000001.vmdk", "-F", "vmdk", "x-000002.vmdk"], in: dir.url)
        try await Self.fill(dir.path("x-000002.vmdk"), format: "vmdk", pattern: 0x33, at: ["2m"])
    }

    @Test("a two-level snapshot chain flattens to its newest state")
    func chainFlattens() async throws {
        let dir = try Scratch("vmdk-chain")
        try await Self.makeChain(in: dir)
        _ = try await Self.convertAndCompare(dir.file("x-000002.vmdk"), in: dir.url)
        let output = dir.path("out-x-000002.qcow2")
        // The newest state: base at 0, the first delta at 1 MiB, the second at 2 MiB.
        for (offset, pattern) in [("0", 0x11), ("1m", 0x22), ("2m", 0x33)] {
            let read = try await sh(["qemu-io", "-f", "qcow2", "-c", "read -P \(pattern) \(offset) 64k", output], allowFailure: true)
            #expect(read.status == 0 && !read.out.contains("Pattern verification failed"), "at \(offset): \(read.out)")
        }
        let info = try await sh(["qemu-img", "info", "--output=json", output])
        #expect(!info.out.contains("backing"), "the output must stand alone: \(info.out)")
    }

    /// Probes the chain's newest link and returns the refusal.
    static func refusal(of image: URL) async throws -> StageError {
        do {
            _ = try await InputProbe.inspectImage(DiskLocator(path: image.path, format: "vmdk"))
        } catch let error as StageError {
            return error
        }
        Issue.record("\(image.lastPathComponent) was accepted")
        return StageError(.badInput, file: image.path, "accepted")
    }

    /// Rewrites `name=value` in a text descriptor (or in the descriptor embedded in a sparse file,
    /// same length), the way a hostile or damaged export would read.
    static func edit(_ path: String, _ old: String, _ new: String) throws {
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        let range = try #require(data.range(of: Data(old.utf8)), "\(old) not in \(path)")
        #expect(old.utf8.count == new.utf8.count || !data.starts(with: Data("KDMV".utf8)))
        data.replaceSubrange(range, with: Data(new.utf8))
        try data.write(to: URL(fileURLWithPath: path))
    }

    @Test("a missing parent is refused naming the snapshot and the parent")
    func missingParent() async throws {
        let dir = try Scratch("vmdk-chain-missing")
        try await Self.makeChain(in: dir)
        try FileManager.default.removeItem(atPath: dir.path("x-000001.vmdk"))
        let error = try await Self.refusal(of: dir.file("x-000002.vmdk"))
        #expect(error.file == dir.path("x-000002.vmdk"))
        #expect(error.message.contains("parent \"x-000001.vmdk\"") && error.message.contains("is missing"), "\(error.message)")
    }

    @Test("a parent outside the directory is refused: a path, '..', an absolute name, a symlink",
          arguments: ["../x-000001.vmdk", "sub/x-000001.vmdk", "/tmp/x-000001.vmdk", "symlink"])
    func parentOutside(_ variant: String) async throws {
        let dir = try Scratch("vmdk-chain-outside")
        try await Self.makeChain(in: dir)
        if variant == "symlink" {
            let away = try dir.subdirectory("away")
            try FileManager.default.moveItem(atPath: dir.path("x-000001.vmdk"), toPath: away.appendingPathComponent("real.vmdk").path)
            try FileManager.default.createSymbolicLink(atPath: dir.path("x-000001.vmdk"), withDestinationPath: "away/real.vmdk")
        } else {
            try Self.edit(dir.path("x-000002.vmdk"), "parentFileNameHint=\"x-000001.vmdk\"", "parentFileNameHint=\"\(variant)\"")
        }
        let error = try await Self.refusal(of: dir.file("x-000002.vmdk"))
        #expect(error.message.contains(variant == "symlink" ? "symbolic link" : "not a plain file name"), "\(error.message)")
    }

    @Test("a parent written after the snapshot (CID mismatch) is refused naming both")
    func cidMismatch() async throws {
        let dir = try Scratch("vmdk-chain-cid")
        try await Self.makeChain(in: dir)
        // qemu gives a disk a new CID at its first write, as VMware does: the parent changed under its snapshot.
        try await Self.fill(dir.path("x-000001.vmdk"), format: "vmdk", pattern: 0x44, at: ["3m"])
        let error = try await Self.refusal(of: dir.file("x-000002.vmdk"))
        #expect(error.message.contains("CID mismatch"), "\(error.message)")
        #expect(error.message.contains("x-000001.vmdk"), "\(error.message)")
    }

    @Test("a chain that loops back to itself is refused")
    func loop() async throws {
        let dir = try Scratch("vmdk-chain-loop")
        try await Self.makeChain(in: dir)
        // The base becomes a snapshot of the newest link, with the CID that link has.
        let cid = try #require(try String(contentsOfFile: dir.path("x-000002.vmdk"), encoding: .utf8)
            .split(separator: "\n").first { $0.hasPrefix("CID=") }).dropFirst(4)
        var base = try String(contentsOfFile: dir.path("x.vmdk"), encoding: .utf8)
        base = base.replacingOccurrences(of: "parentCID=ffffffff", with: "parentCID=\(cid)\nparentFileNameHint=\"x-000002.vmdk\"")
        try base.write(toFile: dir.path("x.vmdk"), atomically: true, encoding: .utf8)
        let error = try await Self.refusal(of: dir.file("x-000002.vmdk"))
        #expect(error.message.contains("loops back"), "\(error.message)")
    }

    @Test("seSparse: a SESPARSE extent is pinned like any other and reaches qemu 7.2's seSparse reader")
    func seSparseExtentReachesQemu() async throws {
        let dir = try Scratch("vmdk-sesparse")
        try """
        # Disk DescriptorFile
        version=1
        CID=2a1b3c4d
        parentCID=ffffffff
        createType="seSparse"

        # Extent description
        RW 8192 SESPARSE "app01-sesparse.vmdk"
        """.write(toFile: dir.path("app01.vmdk"), atomically: true, encoding: .utf8)
        // Missing: refused naming it, before qemu opens anything.
        #expect(throws: StageError.self) { _ = try PinnedImage.open(DiskLocator(path: dir.path("app01.vmdk"), format: "vmdk")) }
        // Present but not a seSparse file: pinned by us, then refused by qemu's own seSparse header check,
        // which shows qemu-img (7.2) reads the format. qemu-img cannot write one, so no conversion is tested.
        try Data(count: 65536).write(to: dir.file("app01-sesparse.vmdk"))
        let error = try await Self.refusal(of: dir.file("app01.vmdk"))
        #expect(error.message.contains("const header magic"), "\(error.message)")
    }

    @Test("an ESXi VMFS5 snapshot (a descriptor naming a COWD -delta.vmdk) is refused with a way out")
    func cowdDeltaIsRefusedClearly() async throws {
        let dir = try Scratch("vmdk-cowd")
        try await Self.makeChain(in: dir)
        let cid = try #require(try String(contentsOfFile: dir.path("x.vmdk"), encoding: .utf8)
            .split(separator: "\n").first { $0.hasPrefix("CID=") }).dropFirst(4)
        try """
        # Disk DescriptorFile
        version=1
        encoding="UTF-8"
        CID=5e6f7a8b
        parentCID=\(cid)
        isNativeSnapshot="no"
        createType="vmfsSparse"
        parentFileNameHint="x.vmdk"
        # Extent description
        RW 16384 VMFSSPARSE "x-000003-delta.vmdk"
        """.write(toFile: dir.path("x-000003.vmdk"), atomically: true, encoding: .utf8)
        // The COWD header as ESXi writes it: magic, version 1, flags 3, then the sizes.
        var header = Data("COWD".utf8)
        for value: UInt32 in [1, 3, 16384, 1, 4, 1, 5] { withUnsafeBytes(of: value.littleEndian) { header.append(contentsOf: $0) } }
        header.append(Data(count: 2048 - header.count))
        try header.write(to: dir.file("x-000003-delta.vmdk"))
        let error = try await Self.refusal(of: dir.file("x-000003.vmdk"))
        #expect(error.message.contains("COWD") && error.message.contains("consolidate"), "\(error.message)")
    }
}
