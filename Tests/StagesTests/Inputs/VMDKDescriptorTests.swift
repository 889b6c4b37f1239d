import Foundation
import Testing
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
        let dir = try TestDirectory()
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
        let dir = try TestDirectory()
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
        let dir = try TestDirectory()
        try TestImageFactory.writeRandom(at: dir.file("x-flat.vmdk"), bytes: 1000 * 512)
        let descriptorURL = dir.file("x.vmdk")
        try Self.descriptor(extent: "x-flat.vmdk").write(to: descriptorURL, atomically: true, encoding: .utf8)
        let error = #expect(throws: StageError.self) { try VMDKDescriptor.validateChain(startingAt: descriptorURL) }
        #expect(error?.message.contains("truncated flat extent") == true)
    }

    @Test("tells which files of a listing are extents of which descriptor")
    func ownership() throws {
        let dir = try TestDirectory()
        _ = try TestImageFactory.makeImage(.vmdkMonolithicFlat, named: "flat", in: dir.url, sizeMiB: 16, randomMiB: 1)
        _ = try TestImageFactory.makeImage(.vmdkTwoGbMaxExtentSparse, named: "split", in: dir.url, sizeMiB: 16, randomMiB: 1)
        _ = try TestImageFactory.makeImage(.vmdkMonolithicSparse, named: "mono", in: dir.url, sizeMiB: 16, randomMiB: 1)
        let listing = try FileManager.default.contentsOfDirectory(atPath: dir.url.path).sorted()
        let owners = VMDKDescriptor.extentOwnership(in: dir.url, listing: listing)
        #expect(owners == ["flat.vmdk": ["flat-flat.vmdk"], "split.vmdk": ["split-s001.vmdk"]])
    }
}
