import Foundation
import Testing
import TestSupport
@testable import Stages

/// The manifest reader on real images made with qemu-img.
@Suite("ArtifactManifestReader", .serialized)
struct ArtifactManifestReaderTests {
    /// Two small VMDKs as a vSphere export leaves them, and the upstream example over them.
    private struct Export {
        var dir: Scratch
        var disk0: URL
        var disk1: URL
        var disk0SHA256: String

        init(_ label: String = #function) async throws {
            dir = try Scratch(label)
            let exports = try dir.subdirectory("exports")
            disk0 = try await TestImageFactory.makeImage(.vmdkStreamOptimized, named: "web01-disk1", in: exports, sizeMiB: 16, randomMiB: 1)
            disk1 = try await TestImageFactory.makeImage(.vmdkMonolithicSparse, named: "web01-disk2", in: exports, sizeMiB: 8, randomMiB: 1)
            disk0SHA256 = try await TestImageFactory.referenceDigest(of: disk0)
        }

        func example(checksum: String? = nil) -> [String: Any] {
            ManifestFixtures.upstreamExample(disk0: disk0.path, disk1: disk1.path, disk0Checksum: checksum ?? "sha256:\(disk0SHA256)")
        }
    }

    /// Reads through `SourceReader` exactly as the pipeline does (identify, then read), and
    /// checks that no disk file changed.
    private func read(_ manifest: URL, disks: [URL]) async throws -> SourceReading {
        let before = try disks.map { try FileDigest.sha256(of: $0) }
        defer { #expect((try? disks.map { try FileDigest.sha256(of: $0) }) == before, "a source disk changed") }
        let kind = try InputProbe.identify(manifest)
        #expect(kind == .manifest)
        let scratch = manifest.deletingLastPathComponent().appendingPathComponent("scratch")
        return try await SourceReader.read(source: manifest, kind: kind, scratchDirectory: scratch)
    }

    private func expectFailure(_ body: () async throws -> Any) async -> StageError? {
        do {
            _ = try await body()
            Issue.record("expected an error")
            return nil
        } catch let error as StageError {
            return error
        } catch {
            Issue.record("unexpected error type: \(error)")
            return nil
        }
    }

    @Test("upstream example (JSON and YAML) → web01 with two disks in order, disk-0 boots", arguments: ["artifact-manifest.json", "artifact-manifest.yaml"])
    func upstreamExample(fileName: String) async throws {
        let export = try await Export()
        let manifest = try ManifestFixtures.write(export.example(), named: fileName, in: export.dir.url)
        let reading = try await read(manifest, disks: [export.disk0, export.disk1])
        let vm = reading.description
        #expect(vm.name == "web01")
        #expect(vm.origin == "manifest")
        #expect(vm.vcpus == 4)
        #expect(vm.memoryMiB == 16 * 1024)
        #expect(vm.firmware == .uefi)
        #expect(vm.osHint == "linux")
        #expect(vm.nics == [NetworkInterface(mac: "00:50:56:ab:cd:ef", network: "VM Network")])
        #expect(vm.disks.map(\.id) == ["disk-0", "disk-1"])
        #expect(vm.disks.map(\.locator) == [DiskLocator(path: export.disk0.path, format: "vmdk"),
                                            DiskLocator(path: export.disk1.path, format: "vmdk")])
        #expect(vm.disks.map(\.virtualSize) == [16 << 20, 8 << 20])
        #expect(vm.disks[0].expectedSHA256 == "sha256:\(export.disk0SHA256)")
        #expect(vm.disks[1].expectedSHA256 == nil)
        // Go omitted disk-0's hint 0; disk-1 has 1. Read as 0 (not 999): disk-0 boots.
        #expect(vm.disks.map(\.bootOrderHint) == [0, 1])
        #expect(vm.bootDiskIndex == 0)
        #expect(vm.disksInBootOrder.map(\.id) == ["disk-0", "disk-1"])
        #expect(reading.facts.contains("disk disk-0: sha256 verified against the manifest"))
        #expect(reading.facts.contains { $0.hasPrefix("warning: disk disk-1: the manifest gives no checksum") })
        // The example's bytes (100 GiB) are neither the stored nor the virtual size: a warning, not an error.
        #expect(reading.facts.contains { $0.hasPrefix("warning: disk disk-0: the manifest says 107374182400 bytes") })
        #expect(reading.facts.contains { $0.hasPrefix("manifest hooks") } == false)
        #expect(reading.facts.contains { $0.hasPrefix("manifest output not applied") })
        #expect(reading.facts.contains("manifest note: Exported from vSphere by hypersdk v0.1.0"))
    }

    @Test("bytes equal to the virtual size or the stored size raise no warning; no vm_name → file stem")
    func bytesAndName() async throws {
        let export = try await Export()
        let stored = try FileManager.default.attributesOfItem(atPath: export.disk1.path)[.size] as? Int ?? -1
        let document = ManifestFixtures.minimal(disks: [
            ["id": "a", "source_format": "vmdk", "local_path": export.disk0.path, "bytes": 16 << 20],
            ["id": "b", "source_format": "vmdk", "local_path": export.disk1.path, "bytes": stored],
        ])
        let manifest = try ManifestFixtures.write(document, named: "db02.json", in: export.dir.url)
        let reading = try await read(manifest, disks: [export.disk0, export.disk1])
        #expect(reading.description.name == "db02")
        #expect(reading.description.firmware == .unknown)
        #expect(reading.description.vcpus == nil)
        // No hints anywhere: all nil, the first disk is the boot candidate.
        #expect(reading.description.disks.map(\.bootOrderHint) == [nil, nil])
        #expect(!reading.facts.contains { $0.contains("the manifest says") })
    }

    @Test("a checksum mismatch fails before use, naming the disk, the path and both digests")
    func checksumMismatch() async throws {
        let export = try await Export()
        let wrong = ManifestFixtures.zeroChecksum
        let manifest = try ManifestFixtures.write(export.example(checksum: wrong), named: "web01.json", in: export.dir.url)
        let error = await expectFailure { try await read(manifest, disks: [export.disk0, export.disk1]) }
        #expect(error?.code == .badInput)
        // The dropped manifest is the file in error; the disk is named in the message.
        #expect(error?.file == manifest.path)
        #expect(error?.message.hasPrefix(export.disk0.path + ": ") == true)
        #expect(error?.message.contains("disk disk-0 of web01.json: checksum mismatch") == true)
        #expect(error?.message.contains(wrong) == true)
        #expect(error?.message.contains("sha256:\(export.disk0SHA256)") == true)
    }

    @Test("a missing disk file is refused at its JSON path")
    func missingFile() async throws {
        let export = try await Export()
        let gone = export.dir.file("exports/web01-disk3.vmdk").path
        var document = export.example()
        var disks = document["disks"] as? [[String: Any]] ?? []
        disks[1]["local_path"] = gone
        document["disks"] = disks
        let manifest = try ManifestFixtures.write(document, named: "web01.json", in: export.dir.url)
        let error = await expectFailure { try await read(manifest, disks: [export.disk0]) }
        #expect(error?.description == "\(manifest.path): disks[1].local_path: '\(gone)' does not exist")
    }

    @Test("a directory, a dangling symlink and the same file twice are refused")
    func notUsableFiles() async throws {
        let export = try await Export()
        let cases: [(String, String)] = [
            (export.dir.url.path, "is not a regular file"),
            // It may point anywhere: nothing is said about where.
            (export.dir.file("dangling.vmdk").path, "is not allowed (outside the queue and manifest_allowed_dirs)"),
            (export.disk0.path, "is the same file as disks[0].local_path"),
        ]
        try FileManager.default.createSymbolicLink(atPath: export.dir.file("dangling.vmdk").path, withDestinationPath: "/nonexistent/x")
        for (path, problem) in cases {
            let document = ManifestFixtures.minimal(disks: [
                ["id": "a", "source_format": "vmdk", "local_path": export.disk0.path],
                ["id": "b", "source_format": "vmdk", "local_path": path],
            ])
            let manifest = try ManifestFixtures.write(document, named: "vm.json", in: export.dir.url)
            let error = await expectFailure { try await read(manifest, disks: [export.disk0]) }
            #expect(error?.message.hasPrefix("disks[1].local_path: '\(path)' \(problem)") == true, "\(error?.message ?? "")")
        }
    }

    @Test("a symlinked disk is read through its resolved path, and that is a fact")
    func symlinkResolved() async throws {
        let export = try await Export()
        let link = export.dir.file("link.vmdk")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: export.disk1)
        let document = ManifestFixtures.minimal(disks: [["id": "a", "source_format": "vmdk", "local_path": link.path]])
        let manifest = try ManifestFixtures.write(document, named: "vm.yml", in: export.dir.url)
        let reading = try await read(manifest, disks: [export.disk1])
        let resolved = URL(fileURLWithPath: export.disk1.path).resolvingSymlinksInPath().path
        #expect(reading.description.disks[0].locator.path == resolved)
        #expect(reading.facts.contains { $0.contains("is a symlink; reading \(resolved)") })
    }

    @Test("content must agree with source_format: a qcow2 declared raw, a raw declared vmdk")
    func contentDisagrees() async throws {
        let dir = try Scratch()
        let qcow2 = try await TestImageFactory.makeImage(.qcow2, named: "q", in: dir.url, sizeMiB: 8, randomMiB: 1)
        let raw = try await TestImageFactory.makeImage(.raw, named: "r", in: dir.url, sizeMiB: 8, randomMiB: 1)
        let asRaw = try ManifestFixtures.write(ManifestFixtures.minimal(disks: [["id": "a", "source_format": "raw", "local_path": qcow2.path]]),
                                               named: "one.json", in: dir.url)
        let error = await expectFailure { try await read(asRaw, disks: [qcow2]) }
        #expect(error?.message.contains("declared raw in one.json, but the file is a qcow2 image") == true)

        let asVMDK = try ManifestFixtures.write(ManifestFixtures.minimal(disks: [["id": "a", "source_format": "vmdk", "local_path": raw.path]]),
                                                named: "two.json", in: dir.url)
        let second = await expectFailure { try await read(asVMDK, disks: [raw]) }
        #expect(second?.file == asVMDK.path)
        #expect(second?.message.hasPrefix(raw.path + ": ") == true)
    }

    @Test("vdi, raw, qcow2, vhd and vhdx disks are read with the right qemu driver")
    func otherFormats() async throws {
        let dir = try Scratch()
        let raw = try await TestImageFactory.makeImage(.raw, named: "r", in: dir.url, sizeMiB: 8, randomMiB: 1)
        let vdi = dir.file("v.vdi")
        try await TestImageFactory.run("qemu-img", ["convert", "-f", "raw", "-O", "vdi", raw.path, vdi.path])
        let qcow2 = try await TestImageFactory.makeImage(.qcow2, named: "q", in: dir.url, sizeMiB: 8, randomMiB: 1)
        let vhd = try await TestImageFactory.makeImage(.vhd, named: "h", in: dir.url, sizeMiB: 8, randomMiB: 1)
        let vhdx = try await TestImageFactory.makeImage(.vhdx, named: "x", in: dir.url, sizeMiB: 8, randomMiB: 1)
        let disks: [(String, URL)] = [("vdi", vdi), ("raw", raw), ("qcow2", qcow2), ("vhd", vhd), ("vhdx", vhdx)]
        var checksums: [String] = []
        for disk in disks { checksums.append((try? await TestImageFactory.referenceDigest(of: disk.1)) ?? "") }
        var document = ManifestFixtures.minimal(disks: disks.enumerated().map { index, disk in
            ["id": "d\(index)", "source_format": disk.0, "local_path": disk.1.path,
             "checksum": "sha256:" + checksums[index]]
        })
        document["vm"] = ["cpu": 2, "mem_gb": 1, "firmware": "bios"]
        let manifest = try ManifestFixtures.write(document, named: "multi.yaml", in: dir.url)
        let reading = try await read(manifest, disks: disks.map(\.1))
        #expect(reading.description.disks.map(\.locator.format) == ["vdi", "raw", "qcow2", "vpc", "vhdx"])
        #expect(reading.description.disks.allSatisfy { ($0.virtualSize ?? 0) >= 8 << 20 })
        #expect(reading.description.firmware == .bios)
        #expect(reading.facts.filter { $0.hasSuffix("sha256 verified against the manifest") }.count == 5)
        // A VDI declared as raw is caught by its signature.
        let wrong = try ManifestFixtures.write(ManifestFixtures.minimal(disks: [["id": "a", "source_format": "raw", "local_path": vdi.path]]),
                                               named: "wrong.json", in: dir.url)
        let error = await expectFailure { try await read(wrong, disks: [vdi]) }
        #expect(error?.message.contains("but the file is a VDI image") == true)
        // And a raw declared vdi by its absence.
        let missing = try ManifestFixtures.write(ManifestFixtures.minimal(disks: [["id": "a", "source_format": "vdi", "local_path": raw.path]]),
                                                 named: "missing.json", in: dir.url)
        let second = await expectFailure { try await read(missing, disks: [raw]) }
        #expect(second?.message.contains("has no VDI signature") == true)
    }

    @Test("schema errors surface through SourceReader with the manifest's path")
    func schemaErrorThroughReader() async throws {
        let export = try await Export()
        var document = export.example()
        document["manifest_version"] = "2.0"
        let manifest = try ManifestFixtures.write(document, named: "web01.json", in: export.dir.url)
        let error = await expectFailure { try await read(manifest, disks: [export.disk0, export.disk1]) }
        #expect(error?.file == manifest.path)
        #expect(error?.message.hasPrefix("manifest_version: unsupported version '2.0'") == true)
    }
}
