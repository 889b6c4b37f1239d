import Foundation
import Testing
import TestSupport
@testable import Stages

@Suite("Hyper-V export and VHDX checkpoint chains", .serialized)
struct HyperVExportTests {
    /// The base plus two checkpoint levels: FULLY_PRESENT blocks, PARTIALLY_PRESENT ones
    /// (sector bitmaps, a write straddling two blocks), ZERO and UNMAPPED blocks, and a second
    /// level overwriting part of the first.
    @Test("base + two checkpoint levels flatten to exactly the state the chain describes")
    func twoLevelChain() async throws {
        let scratch = try Scratch()
        var export = try await HyperVExportFixture(in: scratch)
        try await export.checkpoint("Web01_A1B2.avhdx", parent: "base.vhdx",
                                    writes: [.init(1 << 20, 1 << 20), .init(3584, 4096), .init((2 << 20) + 512, 1536)],
                                    zeroBlocks: [4], unmapBlocks: [5])
        try await export.checkpoint("Web01_C3D4.avhdx", parent: "Web01_A1B2.avhdx",
                                    writes: [.init((1 << 20) + 512, 1024), .init(3 << 20, 1 << 20), .init(0, 512),
                                             .init((4 << 20) + 4096, 512)])
        try FileManager.default.createDirectory(at: export.folder.appendingPathComponent("Snapshots"), withIntermediateDirectories: true)
        try Data(count: 512).write(to: export.folder.appendingPathComponent("Virtual Machines/2D5A3C1E-0000-4B7D-9D3E-1C2B3A4D5E6F.vmgs"))
        let reading = try await HyperVExportReader.read(export.folder, scratchDirectory: export.work)
        let vm = reading.description
        #expect(reading.facts.contains { $0.contains("not read (runtime and guest state") && $0.contains(".vmgs") })
        #expect(reading.facts.contains { $0.contains("not read (checkpoint settings") && $0.contains("Snapshots") })
        #expect(vm.name == "Web01")
        #expect(vm.origin == "hyperv")
        #expect(vm.disks.count == 1)
        let disk = try #require(vm.disks.first)
        #expect(disk.locator.format == "raw")
        #expect(disk.locator.path.hasPrefix(export.work.path + "/"))
        let flattened = try Data(contentsOf: URL(fileURLWithPath: disk.locator.path))
        #expect(flattened.count == export.expected.count)
        for block in 0..<HyperVExportFixture.sizeMiB {
            let range = (block << 20)..<((block + 1) << 20)
            #expect(flattened[range] == export.expected[range], "block \(block) differs")
        }
        #expect(reading.facts.contains { $0.contains(".vmcx not read") })
        #expect(reading.facts.contains { $0.contains("base.vhdx ← Web01_A1B2.avhdx ← Web01_C3D4.avhdx") })
        #expect(!FileManager.default.fileExists(atPath: disk.locator.path + ".partial"))
    }

    @Test("the whole source reader: identified as a directory, the flattened disk validated by qemu")
    func throughSourceReader() async throws {
        let scratch = try Scratch()
        var export = try await HyperVExportFixture(in: scratch)
        try await export.checkpoint("Web01_A1B2.avhdx", parent: "base.vhdx", writes: [.init(0, 1 << 20)])
        #expect(try InputProbe.identify(export.folder) == .hyperv)
        let reading = try await SourceReader.read(source: export.folder, kind: .hyperv, scratchDirectory: export.work)
        #expect(reading.description.disks.first?.virtualSize == UInt64(HyperVExportFixture.sizeMiB) << 20)
        #expect(reading.description.disks.first?.identity != nil)
        // The stage may run again after a crash: the work file is made anew, the same content.
        let again = try await SourceReader.read(source: export.folder, kind: .hyperv, scratchDirectory: export.work)
        let path = try #require(again.description.disks.first?.locator.path)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == export.expected)
    }

    @Test("no checkpoint: the base VHDX is the disk, read in place by qemu")
    func baseOnly() async throws {
        let scratch = try Scratch()
        let export = try await HyperVExportFixture(in: scratch)
        let reading = try await HyperVExportReader.read(export.folder, scratchDirectory: export.work)
        #expect(reading.description.disks.map(\.locator) == [DiskLocator(path: export.disks.appendingPathComponent("base.vhdx").path, format: "vhdx")])
        #expect(try FileManager.default.contentsOfDirectory(atPath: export.work.path).isEmpty)
    }

    @Test("generation 2 is told by the disk: a GPT with an EFI System Partition is UEFI, an MBR is BIOS",
          arguments: [("label: gpt\nstart=2048, size=4096, type=U\nstart=6144, type=L\n", Firmware.uefi),
                       ("label: gpt\nstart=2048, size=4096, type=21686148-6449-6E6F-744E-656564454649\n", Firmware.bios),
                       ("label: dos\nstart=2048, type=83, bootable\n", Firmware.bios),
                       ("label: gpt\nstart=2048, type=L\n", Firmware.unknown)])
    func firmwareFromDisk(table: String, firmware: Firmware) async throws {
        let scratch = try Scratch()
        var export = try await HyperVExportFixture(in: scratch, partitionTable: table)
        #expect(try await HyperVExportReader.read(export.folder, scratchDirectory: export.work).description.firmware == firmware)
        // Through a checkpoint too (read from the flattened file), which rewrites none of the table.
        try await export.checkpoint("c1.avhdx", parent: "base.vhdx", writes: [.init(5 << 20, 512)])
        #expect(try await HyperVExportReader.read(export.folder, scratchDirectory: export.work).description.firmware == firmware)
    }

    @Test("a checkpoint tree that branches is refused: only the .vmcx knows the current branch")
    func branches() async throws {
        let scratch = try Scratch()
        var export = try await HyperVExportFixture(in: scratch)
        try await export.checkpoint("a.avhdx", parent: "base.vhdx", writes: [.init(0, 512)])
        try await export.checkpoint("b.avhdx", parent: "base.vhdx", writes: [.init(512, 512)])
        await #expect { try await HyperVExportReader.read(export.folder, scratchDirectory: export.work) } throws: { error in
            "\(error)".contains("branches") && "\(error)".contains("base.vhdx")
        }
    }

    /// Each broken chain is refused before anything is written, naming the bad file.
    @Test("broken chains are refused naming the file", arguments: [
        (["--linkage", "{00112233-4455-6677-8899-aabbccddeeff}"], "does not match the DataWriteGuid"),
        (["--relative-path", "..\\..\\..\\outside.vhdx"], "outside the export directory"),
        (["--no-relative-path", "--absolute-path", "\\\\?\\D:\\Hyper-V\\Web01\\base.vhdx"], "only by an absolute path"),
        (["--relative-path", "c1.avhdx"], "loops"),
        (["--truncate", String((5 << 20) + 4096)], "truncated"),
        (["--bad-header-crc"], "CRC-32C mismatch"),
        (["--log-guid", "{6a1f8c20-7d3b-4f7e-9b1a-2c3d4e5f6a7b}"], "log is not empty"),
    ])
    func brokenChain(options: [String], reason: String) async throws {
        let scratch = try Scratch()
        var export = try await HyperVExportFixture(in: scratch)
        try FileManager.default.createDirectory(at: scratch.url.appendingPathComponent("x/y"), withIntermediateDirectories: true)
        try Data(count: 1 << 20).write(to: scratch.url.appendingPathComponent("outside.vhdx"))
        let child = try await export.checkpoint("c1.avhdx", parent: "base.vhdx", writes: [.init(1 << 20, 1 << 20), .init(0, 512)],
                                                extra: options)
        await #expect { try await HyperVExportReader.read(export.folder, scratchDirectory: export.work) } throws: { error in
            guard let error = error as? StageError else { return false }
            return error.code == .badInput && error.file == child.path && error.message.contains(reason)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: export.work.path).isEmpty)
    }

    @Test("a parent reached through a symlinked directory is refused")
    func symlinkedDirectory() async throws {
        let scratch = try Scratch()
        var export = try await HyperVExportFixture(in: scratch)
        try FileManager.default.createSymbolicLink(atPath: export.folder.appendingPathComponent("Link").path,
                                                   withDestinationPath: export.disks.path)
        let child = try await export.checkpoint("c1.avhdx", parent: "base.vhdx", writes: [.init(0, 512)],
                                                extra: ["--relative-path", "..\\Link\\base.vhdx"])
        await #expect { try await HyperVExportReader.read(export.folder, scratchDirectory: export.work) } throws: { error in
            (error as? StageError)?.file == child.path && "\(error)".contains("not a plain directory")
        }
    }

    @Test("a 'Virtual Hard Disks' that is a symlink to disks outside the export is refused")
    func symlinkedDisksFolder() async throws {
        let scratch = try Scratch()
        let export = try await HyperVExportFixture(in: scratch)
        let decoy = scratch.url.appendingPathComponent("Decoy")
        try FileManager.default.createDirectory(at: decoy, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: decoy.appendingPathComponent("Virtual Hard Disks"), withDestinationURL: export.disks)
        try FileManager.default.createDirectory(at: decoy.appendingPathComponent("Virtual Machines"), withIntermediateDirectories: true)
        await #expect { try await HyperVExportReader.read(decoy, scratchDirectory: export.work) } throws: { error in
            "\(error)".contains("not a plain directory")
        }
    }

    @Test("metadata.json says where a Hyper-V export's settings came from")
    func metadataSettingsSource() throws {
        let vm = ConversionMetadata.VM(VMDescription(name: "Web01", disks: [], origin: "hyperv"))
        #expect(vm.settingsSource?.contains(".vmcx is not read") == true)
        let text = String(decoding: try JSONEncoder().encode(vm), as: UTF8.self)
        #expect(text.contains("\"settings_source\""))
        #expect(ConversionMetadata.VM(VMDescription(name: "x", disks: [], origin: "ovf")).settingsSource == nil)
    }

    /// Found by an attack on the merged build: every BAT entry naming block 0's data made a
    /// 13 MiB export write an 8 GiB dense work file, past the flattening's space check.
    @Test("a checkpoint whose BAT names one data block for every block is refused before anything is written")
    func sharedBlocks() async throws {
        let scratch = try Scratch()
        var export = try await HyperVExportFixture(in: scratch)
        try await export.checkpoint("Web01_A1B2.avhdx", parent: "base.vhdx", writes: [.init(0, 1 << 20), .init(1 << 20, 1 << 20)])
        let file = export.disks.appendingPathComponent("Web01_A1B2.avhdx")
        let layout = try VHDXLayout(reading: try ByteRangeReader(path: file.path))
        let handle = try FileHandle(forUpdating: file)
        defer { try? handle.close() }
        try handle.seek(toOffset: layout.batOffset + layout.payloadEntryIndex(1) * 8)
        let second = try #require(try handle.read(upToCount: 8))
        // First: two entries naming one block, within what the file holds: an overlap.
        try handle.seek(toOffset: layout.batOffset + layout.payloadEntryIndex(0) * 8)
        try handle.write(contentsOf: second)
        await #expect { _ = try await HyperVExportReader.read(export.folder, scratchDirectory: export.work) } throws: {
            "\($0)".contains("overlaps") && "\($0)".contains("Web01_A1B2.avhdx")
        }
        // Then every entry: more present data than the file holds.
        for block in 0..<layout.payloadBlockCount {
            try handle.seek(toOffset: layout.batOffset + layout.payloadEntryIndex(block) * 8)
            try handle.write(contentsOf: second)
        }
        await #expect { _ = try await HyperVExportReader.read(export.folder, scratchDirectory: export.work) } throws: {
            "\($0)".contains("share bytes") && "\($0)".contains("Web01_A1B2.avhdx")
        }
        let work = try FileManager.default.contentsOfDirectory(atPath: export.work.path)
        #expect(work.allSatisfy { !$0.hasSuffix(".raw") && !$0.hasSuffix(".partial") }, "\(work)")
    }

    @Test("a directory that is no Hyper-V export is refused by the probe")
    func plainDirectory() throws {
        let scratch = try Scratch()
        #expect { try InputProbe.identify(scratch.url) } throws: { "\($0)".contains("not a Hyper-V export") }
    }
}

@Suite("VHDX parser pieces")
struct VHDXParserPieceTests {
    @Test("CRC-32C of the standard check string") func crc() {
        #expect(CRC32C.checksum(Data("123456789".utf8)) == 0xE306_9283)
    }

    @Test("every GUID constant parses, and prints back as written") func guids() {
        let constants = [VHDXLayout.batRegion, VHDXLayout.metadataRegion, VHDXLayout.fileParametersItem, VHDXLayout.virtualDiskSizeItem,
                         VHDXLayout.virtualDiskIDItem, VHDXLayout.logicalSectorSizeItem, VHDXLayout.physicalSectorSizeItem,
                         VHDXLayout.parentLocatorItem, VHDXLayout.vhdxParentLocatorType,
                         PartitionTableFirmware.efiSystemPartition, PartitionTableFirmware.biosBootPartition]
        #expect(constants.allSatisfy { !$0.isZero })
        #expect(VHDXLayout.batRegion.description == "{2dc27766-f623-4200-9d64-115e9bfd4a08}")
        #expect(VHDXGUID(text: "{2DC27766-F623-4200-9D64-115E9BFD4A08}") == VHDXLayout.batRegion)
        #expect(VHDXGUID(text: "2DC27766-F623-4200-9D64") == nil)
    }

    @Test("sector bitmap runs: bit 0 of byte 0 is the first sector") func runs() {
        var bitmap = Data(count: 8)
        bitmap[0] = 0b1000_0110
        bitmap[1] = 0b0000_0001
        #expect(VHDXBlockApplier.presentRuns(in: bitmap, from: 0, count: 16) == [1..<3, 7..<9])
        #expect(VHDXBlockApplier.presentRuns(in: bitmap, from: 8, count: 8) == [8..<9])
    }

    @Test("relative paths stay inside the export") func insidePaths() throws {
        let components = try VHDXChain.insideComponents("..\\Virtual Hard Disks\\.\\base.vhdx", childDirectory: "/q/VM/Snapshots",
                                                        root: "/q/VM", child: "c")
        #expect(components == ["Virtual Hard Disks", "base.vhdx"])
        #expect(throws: StageError.self) { try VHDXChain.insideComponents("..\\..\\x.vhdx", childDirectory: "/q/VM/D", root: "/q/VM", child: "c") }
        #expect(throws: StageError.self) { try VHDXChain.insideComponents("C:\\x.vhdx", childDirectory: "/q/VM/D", root: "/q/VM", child: "c") }
        #expect(throws: StageError.self) { try VHDXChain.insideComponents("\\x.vhdx", childDirectory: "/q/VM/D", root: "/q/VM", child: "c") }
    }
}

/// Hostile variants the generator has no option for: random bytes over the metadata, the
/// parent locator and the BAT, and over headers and region tables with their CRC-32C made
/// right again (so the mutation gets past the checksum). Each must be parsed or refused with a
/// `StageError`; a trap would end the test process.
@Suite("VHDX mutations", .serialized)
struct VHDXMutationTests {
    @Test("mutated checkpoints are parsed or refused, never trap")
    func mutations() async throws {
        let scratch = try Scratch()
        var export = try await HyperVExportFixture(in: scratch)
        let child = try await export.checkpoint("c1.avhdx", parent: "base.vhdx",
                                                writes: [.init(0, 1 << 20), .init((1 << 20) + 512, 1024)], zeroBlocks: [3])
        let original = try Data(contentsOf: child)
        var generator = SystemRandomNumberGenerator()
        // Metadata (3 MiB + 64 KiB: its items), BAT (2 MiB), headers (64/128 KiB), region tables (192/256 KiB).
        let targets: [(start: Int, length: Int, checksummed: Int?)] = [
            ((3 << 20) + (64 << 10), 256, nil), (3 << 20, 128, nil), (2 << 20, 64, nil),
            (64 << 10, 96, 4096), (192 << 10, 96, 64 << 10),
        ]
        let output = scratch.url.appendingPathComponent("applied.raw")
        var refused = 0
        for round in 0..<300 {
            var data = original
            let target = targets[round % targets.count]
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let at = target.start + Int.random(in: 0..<target.length, using: &generator)
                data[at] = UInt8.random(in: 0...255, using: &generator)
            }
            if let size = target.checksummed {
                let structure = data[target.start..<(target.start + size)]
                let crc = CRC32C.structureChecksum(Data(structure), fieldOffset: 4)
                withUnsafeBytes(of: crc.littleEndian) { data.replaceSubrange((target.start + 4)..<(target.start + 8), with: $0) }
            }
            if round % 7 == 0 { data = data.prefix(Int.random(in: 0..<data.count, using: &generator)) }
            try data.write(to: child)
            do {
                let chain = try VHDXChain.resolve(top: child.path, root: export.folder.path)
                _ = try VHDXBlockTable(layout: chain.base.layout, reader: try chain.base.file.reader()).leadingBytes(1 << 20)
                // And the applier over what passed (bounded: the virtual size must equal the base's 8 MiB).
                FileManager.default.createFile(atPath: output.path, contents: nil)
                try FileHandle(forWritingTo: output).truncate(atOffset: UInt64(HyperVExportFixture.sizeMiB) << 20)
                for link in chain.differencing { try VHDXBlockApplier(link: link, output: try OutputFile(path: output.path)).apply() }
            } catch is StageError {
                refused += 1
            }
        }
        #expect(refused > 0)
    }
}
