import Foundation

/// The header of a hosted sparse VMDK extent ("KDMV"), and the check that the file holds
/// every byte its grain tables point at.
///
/// `qemu-img info` and even `qemu-img check` accept a monolithicSparse image cut short by
/// less than a grain, and a streamOptimized one missing its tail (measured with qemu 7.2):
/// the data past the end then silently reads as zeros. Walking the grain directory is the
/// only reliable truncation test, so the probe does it for every sparse extent.
struct SparseVMDKLayout: Equatable {
    static let magic: [UInt8] = Array("KDMV".utf8)
    static let sectorSize: UInt64 = 512
    private static let grainDirectoryAtEnd: UInt64 = .max
    private static let compressedGrainsFlag: UInt32 = 1 << 16
    /// Refuse layouts whose grain tables alone would exceed this: no real disk needs it,
    /// and a crafted header must not make the probe read gigabytes.
    private static let maximumGrainTableBytes: UInt64 = 1 << 30

    var version: UInt32
    var flags: UInt32
    var capacitySectors: UInt64
    var grainSectors: UInt64
    var descriptorOffsetSectors: UInt64
    var descriptorSectors: UInt64
    var entriesPerGrainTable: UInt32
    var grainDirectorySector: UInt64

    var compressedGrains: Bool { flags & Self.compressedGrainsFlag != 0 }

    /// Reads the header at the start of `reader` (and the footer when the grain directory is at the end).
    init(reading reader: ByteRangeReader) throws {
        let header = try reader.readExactly(at: 0, count: 512, what: "sparse VMDK header")
        guard header.hasPrefix(Self.magic) else {
            throw StageError(.badInput, file: reader.path, "not a sparse VMDK extent: no KDMV magic")
        }
        try self.init(header: header, file: reader.path)
        if grainDirectorySector == Self.grainDirectoryAtEnd {
            // streamOptimized as VMware writes it: the real header is the footer, 1024 bytes from the
            // end (before the end-of-stream marker), so a cut tail loses it. qemu writes the grain
            // directory up front and no end-of-stream marker, so its streams are checked by grains alone.
            guard reader.size >= 1536 else {
                throw StageError(.badInput, file: reader.path, "streamOptimized VMDK too short to hold its footer: truncated")
            }
            let footer = try reader.readExactly(at: reader.size - 1024, count: 512, what: "streamOptimized footer")
            guard footer.hasPrefix(Self.magic) else {
                throw StageError(.badInput, file: reader.path,
                                 "streamOptimized VMDK has no footer at its end (the file is truncated)")
            }
            try self.init(header: footer, file: reader.path)
            guard grainDirectorySector != Self.grainDirectoryAtEnd else {
                throw StageError(.badInput, file: reader.path, "streamOptimized VMDK footer has no grain directory offset")
            }
        }
    }

    private init(header: Data, file: String) throws {
        version = header.littleEndian(UInt32.self, at: 4)
        flags = header.littleEndian(UInt32.self, at: 8)
        capacitySectors = header.littleEndian(UInt64.self, at: 12)
        grainSectors = header.littleEndian(UInt64.self, at: 20)
        descriptorOffsetSectors = header.littleEndian(UInt64.self, at: 28)
        descriptorSectors = header.littleEndian(UInt64.self, at: 36)
        entriesPerGrainTable = header.littleEndian(UInt32.self, at: 44)
        grainDirectorySector = header.littleEndian(UInt64.self, at: 56)
        guard (1...3).contains(version) else {
            throw StageError(.badInput, file: file, "unsupported sparse VMDK version \(version)")
        }
        guard grainSectors > 0, grainSectors <= 1 << 16, grainSectors & (grainSectors - 1) == 0 else {
            throw StageError(.badInput, file: file, "implausible VMDK grain size of \(grainSectors) sectors")
        }
        guard entriesPerGrainTable > 0, entriesPerGrainTable <= 1 << 16 else {
            throw StageError(.badInput, file: file, "implausible VMDK grain table size of \(entriesPerGrainTable) entries")
        }
        guard capacitySectors > 0 || descriptorOffsetSectors == 0 else {
            // qemu's vmdk_open_vmdk4 then opens the embedded descriptor as a descriptor file, with
            // whatever extents it names (checked with qemu-img 7.2: '/etc/hostname' became the disk).
            throw StageError(.badInput, file: file,
                             "sparse VMDK header has capacity 0 and an embedded descriptor, which qemu would open as a descriptor file naming other files")
        }
        guard capacitySectors > 0, capacitySectors <= 1 << 42 else {
            throw StageError(.badInput, file: file, "implausible VMDK capacity of \(capacitySectors) sectors")
        }
    }

    var grainTableCount: UInt64 {
        let sectorsPerTable = grainSectors * UInt64(entriesPerGrainTable)
        return (capacitySectors + sectorsPerTable - 1) / sectorsPerTable
    }

    /// The embedded descriptor text (monolithicSparse/streamOptimized carry one), if any.
    func embeddedDescriptor(in reader: ByteRangeReader) throws -> String? {
        guard descriptorOffsetSectors > 0, descriptorSectors > 0, descriptorSectors <= 2048 else { return nil }
        let offset = try descriptorOffsetSectors.sectorsToBytes(field: "sparse VMDK header descriptorOffset", file: reader.path)
        let data = try reader.readExactly(at: offset, count: Int(descriptorSectors) * 512, what: "embedded VMDK descriptor")
        let text = data.prefix { $0 != 0 }
        return String(decoding: text, as: UTF8.self)
    }

    /// Bytes the extent must have for every grain it references to be present.
    ///
    /// - Throws: `StageError(.badInput)` naming the file when a grain table or grain lies past its end.
    func verifyComplete(in reader: ByteRangeReader) throws {
        let tableCount = grainTableCount
        let tableBytes = UInt64(entriesPerGrainTable) * 4
        // Both factors are bounded by init (capacity ≤ 2^42 sectors, ≤ 2^16 entries of 4 bytes), so this cannot overflow.
        guard tableCount * tableBytes <= Self.maximumGrainTableBytes else {
            throw StageError(.badInput, file: reader.path, "implausible VMDK layout: \(tableCount) grain tables")
        }
        // tableCount * tableBytes is at most maximumGrainTableBytes here, so the counts below fit an Int.
        let directoryOffset = try grainDirectorySector.sectorsToBytes(field: "sparse VMDK header gdOffset", file: reader.path)
        let directory = try reader.readExactly(at: directoryOffset, count: Int(tableCount) * 4, what: "VMDK grain directory")
        var lastGrainSector: UInt64 = 0
        for index in 0..<Int(tableCount) {
            let tableSector = UInt64(directory.littleEndian(UInt32.self, at: index * 4))
            guard tableSector != 0 else { continue }
            let table = try reader.readExactly(at: tableSector * Self.sectorSize, count: Int(tableBytes),
                                               what: "VMDK grain table \(index)")
            for entry in 0..<Int(entriesPerGrainTable) {
                let grain = UInt64(table.littleEndian(UInt32.self, at: entry * 4))
                // 0 = unallocated, 1 = zeroed grain (no data stored).
                if grain > 1, grain > lastGrainSector { lastGrainSector = grain }
            }
        }
        if lastGrainSector > 0 {
            let grainStart = lastGrainSector * Self.sectorSize
            let required: UInt64
            if compressedGrains {
                // A compressed grain starts with its marker: LBA (8 bytes) and compressed size (4 bytes).
                let marker = try reader.readExactly(at: grainStart, count: 12, what: "compressed VMDK grain")
                required = grainStart + 12 + UInt64(marker.littleEndian(UInt32.self, at: 8))
            } else {
                required = grainStart + grainSectors * Self.sectorSize
            }
            guard required <= reader.size else {
                throw StageError(.badInput, file: reader.path,
                                 "truncated VMDK: its grain tables reference data up to byte \(required) but it has only \(reader.size) bytes")
            }
        }
    }
}
