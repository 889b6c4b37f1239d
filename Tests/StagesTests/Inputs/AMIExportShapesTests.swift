import Foundation
import Testing
import TestSupport
@testable import Stages

/// The shapes an AWS export arrives in when it is dropped as `.ami` (README, "Input formats").
@Suite("AMI export shapes", .serialized)
struct AMIExportShapesTests {
    private func read(_ source: URL, in dir: Scratch) async throws -> SourceReading {
        let kind = try InputProbe.identify(source)
        return try await SourceReader.read(source: source, kind: kind, scratchDirectory: try dir.subdirectory("scratch"))
    }

    @Test("what export-image writes (a bare streamOptimized VMDK or dynamic VHD), renamed .ami, is that image",
          arguments: [TestImageFactory.ImageVariant.vmdkStreamOptimized, .vhd])
    func bareExportImage(variant: TestImageFactory.ImageVariant) async throws {
        let dir = try Scratch()
        let raw = dir.file("volume.raw")
        let ami = dir.file("export-ami-0123456789abcdef0.ami")
        try await TestImageFactory.makeRaw(at: raw, sizeMiB: 8, randomMiB: 1)
        try await TestImageFactory.convert(raw, to: variant, at: ami)
        #expect(try InputProbe.identify(ami) == (variant == .vhd ? .vhd : .vmdk))
        let reading = try await read(ami, in: dir)
        #expect(reading.description.name == "export-ami-0123456789abcdef0")
        #expect(reading.description.disks.count == 1)
    }

    @Test("a raw image named .ami is refused: raw has no signature to tell it from anything else")
    func rawNamedAMI() async throws {
        let dir = try Scratch()
        let ami = dir.file("export-ami-0123.ami")
        try await TestImageFactory.makeRaw(at: ami, sizeMiB: 4, randomMiB: 1)
        let error = #expect(throws: StageError.self) { try InputProbe.identify(ami) }
        #expect(error?.message.contains("not an AMI export (tar or tar.gz, or a VMDK, VHD, VHDX or qcow2 image)") == true,
                "\(String(describing: error))")
    }

    @Test("an instance export packed as OVA (ContainerFormat=ova) in a .ami, plain or gzip'd, is read as that OVA",
          arguments: [false, true])
    func instanceExportOVA(gzip: Bool) async throws {
        let dir = try Scratch()
        let built = try await TestImageFactory.makeOVA(named: "i-0abc", in: dir.url, diskCount: 1, sizeMiB: 8)
        let ami = dir.file("export-i-0abc.ami")
        if gzip {
            try await TestImageFactory.run("sh", ["-c", "gzip -c \"$0\" > \"$1\"", built.url.path, ami.path])
        } else {
            try FileManager.default.copyItem(at: built.url, to: ami)
        }
        #expect(try InputProbe.identify(ami) == .ami)
        let reading = try await read(ami, in: dir)
        #expect(reading.description.name == "i-0abc")
        #expect(reading.description.vcpus == 2)
        #expect(reading.description.origin == "ovf")
        #expect(reading.facts.contains { $0.contains("holds an OVF descriptor") }, "\(reading.facts)")
        #expect(reading.facts.contains { $0.contains("verified") })
    }

    @Test("an AMI tarball with two disk images converts the largest and names the other in the facts")
    func twoVolumes() async throws {
        let dir = try Scratch()
        let staging = try dir.subdirectory("staging")
        let ami = dir.file("two-volumes.ami")
        try await TestImageFactory.makeRaw(at: staging.appendingPathComponent("root.raw"), sizeMiB: 8, randomMiB: 4)
        try await TestImageFactory.makeRaw(at: staging.appendingPathComponent("data.raw"), sizeMiB: 2, randomMiB: 1)
        try await TestImageFactory.makeTar(at: ami, from: staging, members: ["data.raw", "root.raw"])
        let reading = try await read(ami, in: dir)
        #expect(reading.facts.contains { $0.hasPrefix("AMI disk payload: member root.raw") })
        #expect(reading.facts.contains { $0.contains("not converted") && $0.contains("data.raw") }, "\(reading.facts)")
    }
}
