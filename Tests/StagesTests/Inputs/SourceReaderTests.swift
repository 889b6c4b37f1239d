import Foundation
import Testing
import TestSupport
@testable import Stages

@Suite("SourceReader", .serialized)
struct SourceReaderTests {
    /// Runs `SourceReader` on `source` with a fresh scratch dir; checks the source's SHA-256
    /// is unchanged and that nothing appeared outside the scratch dir.
    private func describe(_ source: URL, in dir: Scratch) async throws -> (SourceReading, URL) {
        let scratch = try dir.subdirectory("scratch")
        let before = try FileDigest.sha256(of: source)
        let listing = dir.listing()
        defer {
            #expect((try? FileDigest.sha256(of: source)) == before, "source changed")
            #expect(dir.listing().filter { !$0.hasPrefix("scratch") } == listing.filter { !$0.hasPrefix("scratch") })
        }
        let kind = try InputProbe.identify(source)
        return (try await SourceReader.read(source: source, kind: kind, scratchDirectory: scratch), scratch)
    }

    @Test("a bare disk becomes a one-disk VM named after the file", arguments: TestImageFactory.ImageVariant.allCases)
    func bareDisk(variant: TestImageFactory.ImageVariant) async throws {
        let dir = try Scratch()
        let image = try await TestImageFactory.makeImage(variant, named: "db-server", in: dir.url, sizeMiB: 16, randomMiB: 1)
        let (reading, _) = try await describe(image, in: dir)
        let vm = reading.description
        #expect(vm.name == "db-server")
        #expect(vm.origin == "disk")
        #expect(vm.disks.count == 1)
        #expect(vm.disks[0].locator == DiskLocator(path: image.path, format: variant.qemuFormat))
        // VHD rounds the size up to whole CHS cylinders.
        #expect(vm.disks[0].virtualSize ?? 0 >= 16 << 20)
    }

    @Test("VMware OVA: VM facts from the OVF, disks read in place, manifest verified", arguments: ["SHA256", "SHA1"])
    func vmwareOVA(algorithm: String) async throws {
        let dir = try Scratch()
        let ova = try await TestImageFactory.makeOVA(in: dir.url, manifest: algorithm)
        let (reading, scratch) = try await describe(ova.url, in: dir)
        let vm = reading.description
        #expect(vm.name == "web01")
        #expect(vm.vcpus == 2)
        #expect(vm.memoryMiB == 2048)
        #expect(vm.firmware == .uefi)
        #expect(vm.origin == "ovf")
        #expect(vm.nics == [NetworkInterface(mac: "00:50:56:ab:cd:ef", network: "VM Network")])
        #expect(vm.disks.map(\.id) == ["vmdisk1", "vmdisk2"])
        #expect(reading.facts.contains { $0.contains("verified") })
        for (disk, raw) in zip(vm.disks, ova.sourceRaws) {
            #expect(disk.locator.path == ova.url.path)
            #expect(disk.locator.format == "vmdk")
            #expect(disk.locator.offset != nil)
            #expect(disk.virtualSize == 16 << 20)
            #expect((disk.expectedSHA256 != nil) == (algorithm == "SHA256"))
            try await TestImageFactory.expectSameContent(disk.locator, as: raw)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).isEmpty)
    }

    @Test("VirtualBox OVA (OVF 2.0) without a manifest is read; the missing manifest is a fact")
    func virtualBoxOVA() async throws {
        let dir = try Scratch()
        let ova = try await TestImageFactory.makeOVA(named: "vbox-debian", in: dir.url, style: .virtualBox, manifest: nil)
        let (reading, _) = try await describe(ova.url, in: dir)
        #expect(reading.description.name == "vbox-debian")
        #expect(reading.description.vcpus == 4)
        #expect(reading.description.nics == [NetworkInterface(mac: "08:00:27:a1:b2:c3", network: "NAT")])
        #expect(reading.facts.contains { $0.contains("no .mf manifest") })
        try await TestImageFactory.expectSameContent(reading.description.disks[0].locator, as: ova.sourceRaws[0])
    }

    @Test("an OVA whose .mf digest is wrong is refused, naming the member")
    func wrongDigest() async throws {
        let dir = try Scratch()
        let ova = try await TestImageFactory.makeOVA(in: dir.url, diskCount: 1, tamper: true)
        let error = await #expect(throws: StageError.self) { _ = try await describe(ova.url, in: dir) }
        #expect(error?.code == .badInput)
        #expect(error?.file?.hasPrefix(ova.url.path) == true)
        #expect(error?.message.contains("digest mismatch for '\(ova.diskNames[0])'") == true, "\(String(describing: error))")
    }

    @Test("OVAs with hostile members are refused, naming the member", arguments: [
        ("../evil", "'..'"), ("/etc/cron.d/evil", "absolute path"), ("symlink", "symbolic link"), ("hardlink", "hard link"),
    ])
    func hostileOVA(member: String, expected: String) async throws {
        let dir = try Scratch()
        let ova = dir.file("evil.ova")
        let ovf = OVFFixtures.vmware(disks: [.init(href: "disk.vmdk")])
        let hostile: HostileArchiveFactory.Member = switch member {
        case "symlink": .symlink("disk.vmdk", target: "/etc/shadow")
        case "hardlink": .hardlink("disk.vmdk", target: "/etc/shadow")
        default: .file(member, "payload")
        }
        try await HostileArchiveFactory.write([.file("evil.ovf", ovf), hostile], to: ova)
        let error = await #expect(throws: StageError.self) { _ = try await describe(ova, in: dir) }
        #expect(error?.file == ova.path)
        #expect(error?.message.contains(expected) == true, "\(String(describing: error))")
        #expect(!FileManager.default.fileExists(atPath: dir.url.deletingLastPathComponent().appendingPathComponent("evil").path))
    }

    @Test("OVAs whose OVF declares entities (XXE, expansion) are refused")
    func entityOVA() async throws {
        let dir = try Scratch()
        for (label, xml) in [("xxe", OVFFixtures.externalEntity), ("lol", OVFFixtures.entityExpansion)] {
            let ova = dir.file("\(label).ova")
            try await HostileArchiveFactory.write([.file("\(label).ovf", xml)], to: ova)
            let error = await #expect(throws: StageError.self) { _ = try await describe(ova, in: dir) }
            #expect(error?.file?.hasPrefix(ova.path) == true)
            #expect(error?.message.contains("DOCTYPE") == true)
        }
        let ovf = dir.file("xxe-standalone.ovf")
        try OVFFixtures.externalEntity.write(to: ovf, atomically: true, encoding: .utf8)
        let error = await #expect(throws: StageError.self) { _ = try await describe(ovf, in: dir) }
        #expect(error?.file == ovf.path)
    }

    @Test("an OVF (in an OVA or a directory) referencing a missing disk is refused, naming the disk")
    func missingDisk() async throws {
        let dir = try Scratch()
        let ova = dir.file("nodisk.ova")
        try await HostileArchiveFactory.write([.file("nodisk.ovf", OVFFixtures.vmware(disks: [.init(href: "gone.vmdk")]))], to: ova)
        let ovaError = await #expect(throws: StageError.self) { _ = try await describe(ova, in: dir) }
        #expect(ovaError?.file == ova.path)
        #expect(ovaError?.message.contains("'gone.vmdk'") == true)

        let vmDir = try dir.subdirectory("vm")
        let ovf = vmDir.appendingPathComponent("vm.ovf")
        try OVFFixtures.vmware(disks: [.init(href: "gone.vmdk")]).write(to: ovf, atomically: true, encoding: .utf8)
        let ovfError = await #expect(throws: StageError.self) { _ = try await describe(ovf, in: dir) }
        #expect(ovfError?.file == ovf.path)
        #expect(ovfError?.message.contains("'gone.vmdk'") == true)
        #expect(ovfError?.message.contains("missing") == true)
    }

    @Test("an OVF directory with a monolithicFlat disk and a manifest beside it")
    func ovfDirectory() async throws {
        let dir = try Scratch()
        let vmDir = try dir.subdirectory("vm")
        let disk = try await TestImageFactory.makeImage(.vmdkMonolithicFlat, named: "app", in: vmDir, sizeMiB: 16, randomMiB: 1)
        let ovf = vmDir.appendingPathComponent("app.ovf")
        try OVFFixtures.vmware(name: "app", disks: [.init(href: disk.lastPathComponent, capacityMiB: 16)])
            .write(to: ovf, atomically: true, encoding: .utf8)
        try await TestImageFactory.manifest(for: ["app.ovf", "app.vmdk", "app-flat.vmdk"], in: vmDir)
            .write(to: vmDir.appendingPathComponent("app.mf"), atomically: true, encoding: .utf8)
        let (reading, _) = try await describe(ovf, in: dir)
        #expect(reading.description.name == "app")
        #expect(reading.description.disks.map(\.locator) == [DiskLocator(path: disk.path, format: "vmdk")])
        #expect(reading.facts.contains { $0.contains("verified: 3 digests") })

        // A wrong digest beside it is refused, naming the file.
        try "SHA256(app-flat.vmdk)= \(String(repeating: "a", count: 64))\n"
            .write(to: vmDir.appendingPathComponent("app.mf"), atomically: true, encoding: .utf8)
        let error = await #expect(throws: StageError.self) { _ = try await describe(ovf, in: dir) }
        #expect(error?.message.contains("'app-flat.vmdk'") == true)
    }

    @Test("AMI exports: a plain tar is read in place, a tgz is decompressed into scratch only", arguments: [false, true])
    func ami(gzip: Bool) async throws {
        let dir = try Scratch()
        let staging = try dir.subdirectory("staging")
        let raw = staging.appendingPathComponent("image.raw")
        try await TestImageFactory.makeRaw(at: raw, sizeMiB: 16, randomMiB: 2)
        try #"{"ImageId":"ami-0123456789abcdef0","Architecture":"x86_64"}"#
            .write(to: staging.appendingPathComponent("manifest.json"), atomically: true, encoding: .utf8)
        try await TestImageFactory.convert(raw, to: .vhd, at: staging.appendingPathComponent("small.vhd"))
        // Replace the raw by a 1 MiB one so the VHD (about 2 MiB stored) is the largest image member.
        try FileManager.default.removeItem(at: raw)
        try await TestImageFactory.makeRaw(at: raw, sizeMiB: 1, randomMiB: 1)
        let ami = dir.file("export.ami")
        try await TestImageFactory.makeTar(at: ami, from: staging, members: ["manifest.json", "image.raw", "small.vhd"], gzip: gzip)
        let (reading, scratch) = try await describe(ami, in: dir)
        let disk = try #require(reading.description.disks.first)
        #expect(reading.description.name == "export")
        #expect(disk.locator.format == "vpc")
        #expect(disk.virtualSize ?? 0 >= 16 << 20)
        let scratchFiles = try FileManager.default.contentsOfDirectory(atPath: scratch.path)
        if gzip {
            #expect(scratchFiles == ["ami-payload.tar"])
            #expect(disk.locator.path == scratch.appendingPathComponent("ami-payload.tar").path)
        } else {
            #expect(scratchFiles.isEmpty)
            #expect(disk.locator.path == ami.path)
        }
    }

    @Test("manifests are not handled here")
    func manifestKind() async throws {
        let dir = try Scratch()
        let file = dir.file("artifact-manifest.json")
        try "{}".write(to: file, atomically: true, encoding: .utf8)
        #expect(try InputProbe.identify(file) == .manifest)
        await #expect(throws: StageError.self) {
            _ = try await SourceReader.describe(source: file, kind: .manifest, scratchDirectory: dir.url)
        }
    }
}
