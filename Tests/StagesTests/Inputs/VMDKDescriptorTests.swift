import Foundation
import Testing
import TestSupport
@testable import Stages

@Suite("VMDKDescriptor", .serialized)
struct VMDKDescriptorTests {
    static func descriptor(extent: String, type: String = "FLAT", parent: String? = nil) -> String {
        var text = """
        # Disk DescriptorFile
        version=1
        CID=8b3e3c89
        parentCID=\(parent == nil ? "ffffffff" : "12345678")
        createType="monolithicFlat"

        """
        if let parent { text += "parentFileNameHint=\"\(parent)\"\n" }
        text += """
        # Extent description
        RW 2048 \(type) "\(extent)" 0

        # The Disk Data Base
        ddb.adapterType = "lsilogic"
        """
        return text
    }

    @Test("parses create type, extents with offsets and the parent hint")
    func parses() throws {
        let text = Self.descriptor(extent: "x-flat.vmdk", parent: "base.vmdk") + "\nRW 100 ZERO\nRDONLY 4096 SPARSE \"x-s002.vmdk\""
        let parsed = try VMDKDescriptor.parse(text, file: "x.vmdk")
        #expect(parsed.createType == "monolithicFlat")
        #expect(parsed.parentFileNameHint == "base.vmdk")
        #expect(parsed.hasParent)
        #expect(parsed.extents.count == 3)
        #expect(parsed.extents[0] == .init(access: "RW", sectors: 2048, type: .flat, fileName: "x-flat.vmdk", offsetSectors: 0))
        #expect(parsed.extents[1].type == .zero)
        #expect(parsed.extents[2].access == "RDONLY")
    }

    @Test("extents outside the descriptor's directory are refused before qemu opens them",
          arguments: ["/etc/shadow", "../outside-flat.vmdk", "sub/x-flat.vmdk", "link-flat.vmdk", "missing-flat.vmdk"])
    func hostileExtent(extent: String) async throws {
        let dir = try Scratch()
        let outside = dir.file("outside-flat.vmdk")
        try TestImageFactory.writeRandom(at: outside, bytes: 2048 * 512)
        let vmDir = try dir.subdirectory("vm")
        try FileManager.default.createSymbolicLink(at: vmDir.appendingPathComponent("link-flat.vmdk"), withDestinationURL: outside)
        let descriptorURL = vmDir.appendingPathComponent("x.vmdk")
        try Self.descriptor(extent: extent).write(to: descriptorURL, atomically: true, encoding: .utf8)
        #expect(try InputProbe.identify(descriptorURL) == .vmdk)
        let error = await #expect(throws: StageError.self) {
            _ = try await InputProbe.inspectImage(DiskLocator(path: descriptorURL.path, format: "vmdk"))
        }
        #expect(error?.code == .badInput)
        #expect(error?.file == descriptorURL.path)
        #expect(error?.message.contains(extent) == true, "\(String(describing: error))")
    }

    @Test("a snapshot parent outside the directory is refused; one beside it is followed")
    func snapshotParent() throws {
        let dir = try Scratch()
        try TestImageFactory.writeRandom(at: dir.file("x-flat.vmdk"), bytes: 2048 * 512)
        try Self.descriptor(extent: "x-flat.vmdk").write(to: dir.file("base.vmdk"), atomically: true, encoding: .utf8)
        let child = dir.file("child.vmdk")
        try Self.descriptor(extent: "x-flat.vmdk", parent: "base.vmdk").write(to: child, atomically: true, encoding: .utf8)
        #expect(try VMDKDescriptor.validateChain(startingAt: child).map(\.lastPathComponent) == ["child.vmdk", "x-flat.vmdk", "base.vmdk"])
        let evil = dir.file("evil.vmdk")
        try Self.descriptor(extent: "x-flat.vmdk", parent: "/etc/passwd").write(to: evil, atomically: true, encoding: .utf8)
        let error = #expect(throws: StageError.self) { try VMDKDescriptor.validateChain(startingAt: evil) }
        #expect(error?.message.contains("parent '/etc/passwd'") == true)
        let loop = dir.file("loop.vmdk")
        try Self.descriptor(extent: "x-flat.vmdk", parent: "loop.vmdk").write(to: loop, atomically: true, encoding: .utf8)
        #expect(throws: StageError.self) { try VMDKDescriptor.validateChain(startingAt: loop) }
    }

    @Test("a short flat extent is refused as truncated")
    func shortFlatExtent() throws {
        let dir = try Scratch()
        try TestImageFactory.writeRandom(at: dir.file("x-flat.vmdk"), bytes: 1000 * 512)
        let descriptorURL = dir.file("x.vmdk")
        try Self.descriptor(extent: "x-flat.vmdk").write(to: descriptorURL, atomically: true, encoding: .utf8)
        let error = #expect(throws: StageError.self) { try VMDKDescriptor.validateChain(startingAt: descriptorURL) }
        #expect(error?.message.contains("truncated flat extent") == true)
    }

    @Test("tells which files of a listing are extents of which descriptor")
    func ownership() async throws {
        let dir = try Scratch()
        _ = try await TestImageFactory.makeImage(.vmdkMonolithicFlat, named: "flat", in: dir.url, sizeMiB: 16, randomMiB: 1)
        _ = try await TestImageFactory.makeImage(.vmdkTwoGbMaxExtentSparse, named: "split", in: dir.url, sizeMiB: 16, randomMiB: 1)
        _ = try await TestImageFactory.makeImage(.vmdkMonolithicSparse, named: "mono", in: dir.url, sizeMiB: 16, randomMiB: 1)
        let listing = try FileManager.default.contentsOfDirectory(atPath: dir.url.path).sorted()
        let owners = VMDKDescriptor.extentOwnership(in: dir.url, listing: listing)
        #expect(owners == ["flat.vmdk": ["flat-flat.vmdk"], "split.vmdk": ["split-s001.vmdk"]])
    }

    // MARK: - Extents as qemu reads them

    static func descriptor(extentLines: String) -> String {
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n# Extent description\n"
            + extentLines + "\n"
    }

    /// Extent text that qemu 7.2 reads differently from one extent per line (checked against
    /// qemu-img in `qemuAgrees`).
    static let disagreeing: [String] = [
        "RW 8192 FLAT\n\"other.img\" 0",                     // split before the name
        "RW\n8192\nFLAT\n\"other.img\"\n0",                   // newline between every token
        "RW 8192 FLAT \"flat.img\"\n0",                        // offset on the next line
        "\nRW 8192 FLAT \"flat.img\" 0",                       // blank line first: qemu reads the extent twice
        "  \t\nRW 8192 FLAT \"flat.img\" 0",                   // whitespace-only line first
        "RW 8192 FLAT \"flat.img\" 0\rRW 8192 FLAT \"other.img\" 0", // CR is no line end to qemu
        "RW\u{0B}8192 FLAT \"flat.img\" 0",                    // vertical tab: a space to qemu, a line end to Swift
        "RW 8192 FLAT \"flat.img\" 0\n# parentFileNameHint=\"other.img\"", // qemu takes the parent from a comment
        "RW 8192 FLAT \"flat.img\" 0 RW",                      // trailing junk qemu ignores
    ]

    /// Extent text both readings agree on.
    static let agreeing: [String] = [
        "RW 8192 FLAT \"flat.img\" 0",
        "RW\t8192\tFLAT\t\"flat.img\"\t0",
        "   RW 8192 FLAT \"flat.img\" 0\r",                     // CRLF line ending
        "RW 8192 FLAT \"flat.img\" 0\nRW 8192 FLAT \"other.img\" 0",
        "RW 8192 FLAT \"flat.img\" 0\n\0\nRW 8192 FLAT \"other.img\" 0", // nothing after a NUL exists for qemu
        "RDONLY 8192 FLAT \"other.img\" 0\nRW 8192 FLAT \"flat.img\" 0",
    ]

    @Test("extent text qemu reads differently from one extent per line is refused", arguments: disagreeing.indices)
    func splitExtentRefused(index: Int) throws {
        let text = Self.descriptor(extentLines: Self.disagreeing[index])
        let error = #expect(throws: StageError.self) { _ = try VMDKDescriptor.parse(text, file: "x.vmdk") }
        #expect(error?.code == .badInput)
        #expect(error?.file == "x.vmdk")
    }

    @Test("a split extent line is reported as split, naming the line")
    func splitMessage() throws {
        let text = Self.descriptor(extentLines: "RW 8192 FLAT\n\"/etc/shadow\" 0")
        let error = #expect(throws: StageError.self) { _ = try VMDKDescriptor.parse(text, file: "x.vmdk") }
        #expect(error?.message.contains("extent line 8 is split across lines") == true, "\(String(describing: error))")
        #expect(error?.message.contains("/etc/shadow") == true)
    }

    @Test("malformed extents qemu would refuse, quotes in names and names past 511 bytes are refused",
          arguments: ["RW 8192 SPARSE \"fl\"at.img\"", "RW 8192 SPARSE \"" + String(repeating: "a", count: 600) + "\"",
                      "RW 8192 SPARSE \"flat.img\" 5", "RW 8192 VMFS \"flat.img\" 5", "RW 8192 FLAT \"flat.img\"",
                      "RW 9223372036854775808 FLAT \"flat.img\" 0"])
    func qemuInvalid(line: String) throws {
        let error = #expect(throws: StageError.self) {
            _ = try VMDKDescriptor.parse(Self.descriptor(extentLines: line), file: "x.vmdk")
        }
        #expect(error?.code == .badInput)
    }

    @Test("extent text both readings agree on is accepted", arguments: agreeing.indices)
    func agreeingAccepted(index: Int) throws {
        let parsed = try VMDKDescriptor.parse(Self.descriptor(extentLines: Self.agreeing[index]), file: "x.vmdk")
        #expect(parsed.extents.contains { $0.fileName == "flat.img" })
    }

    @Test("the qemu-compatible scan names the extents real qemu-img opens", arguments: ["disagreeing", "agreeing"])
    func qemuAgrees(set: String) async throws {
        let dir = try Scratch()
        for name in ["flat.img", "other.img"] {
            try Data(count: 4 << 20).write(to: dir.file(name))
        }
        let variants = set == "agreeing" ? Self.agreeing : Self.disagreeing
        for (index, lines) in variants.enumerated() {
            let url = dir.file("v\(index).vmdk")
            try Data(Self.descriptor(extentLines: lines).utf8).write(to: url)
            let ours: [String]
            switch QemuVMDKDescriptorScan.extents(in: Array(Self.descriptor(extentLines: lines).utf8)) {
            case .invalid: ours = ["invalid"]
            case .extents(let found): ours = found.map { String(decoding: $0.fileName, as: UTF8.self) }
            }
            let qemu: [String]
            do {
                let json = try await TestImageFactory.run("qemu-img", ["info", "--output=json", "-f", "vmdk", url.path])
                let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
                let extents = ((object?["format-specific"] as? [String: Any])?["data"] as? [String: Any])?["extents"] as? [[String: Any]]
                qemu = (extents ?? []).compactMap { ($0["filename"] as? String).map { URL(fileURLWithPath: $0).lastPathComponent } }
            } catch let failure as TestToolFailure where failure.stderr.contains("Invalid extent line") {
                qemu = ["invalid"]
            }
            #expect(ours == qemu, "variant \(index) \(lines.debugDescription): qemu-img opens \(qemu), the scan says \(ours)")
        }
    }

    @Test("a sparse VMDK whose parent qemu would take from the bytes after the header, not the descriptor, is refused")
    func sparseParentWindow() async throws {
        let dir = try Scratch()
        let url = dir.file("s.vmdk")
        try await TestImageFactory.run("qemu-img", ["create", "-q", "-f", "vmdk", url.path, "1M"])
        var bytes = try Data(contentsOf: url)
        // Move the header's descriptor pointer to a copy of the descriptor elsewhere, and plant a parent at sector 1.
        let descriptorStart = 512
        let text = Data(bytes[descriptorStart..<(descriptorStart + 512)])
        bytes.append(text)
        let newSector = UInt64(bytes.count / 512 - 1)
        for index in 0..<8 { bytes[28 + index] = UInt8(truncatingIfNeeded: newSector >> (8 * UInt64(index))) }
        for index in 0..<8 { bytes[36 + index] = index == 0 ? 1 : 0 }
        let planted = Data("parentFileNameHint=\"/etc/passwd\"\n".utf8)
        bytes.replaceSubrange(descriptorStart..<(descriptorStart + planted.count), with: planted)
        try bytes.write(to: url)
        let error = #expect(throws: StageError.self) { _ = try VMDKDescriptor.validateChain(startingAt: url) }
        #expect(error?.message.contains("parentFileNameHint") == true, "\(String(describing: error))")
    }
}
