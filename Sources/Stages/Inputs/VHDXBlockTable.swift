import Foundation

/// What one payload block of a VHDX holds, decided from its BAT entry (MS-VHDX 2.5.1.1).
enum VHDXBlockContent: Equatable, Sendable {
    /// Not in this file: the parent's (NOT_PRESENT; UNDEFINED, whose content the
    /// specification leaves arbitrary, so the parent's is as valid as any and leaks nothing).
    case parent
    /// Zeros: ZERO ("MUST return zeros") and UNMAPPED (zeros or the old content; zeros, so
    /// nothing trimmed comes back).
    case zero
    /// FULLY_PRESENT: the whole block at this byte offset of the file.
    case data(fileOffset: UInt64)
    /// PARTIALLY_PRESENT (differencing only): the block at `fileOffset`, for the sectors whose
    /// bit is set in the chunk's sector bitmap block at `bitmapOffset`; the parent's for the rest.
    case partial(fileOffset: UInt64, bitmapOffset: UInt64)
}

/// Reads a VHDX's BAT one chunk at a time (a chunk: `chunkRatio` payload entries, then the
/// entry of their sector bitmap block) and validates each entry: a known state, and a block
/// that lies past the header section and inside the file.
struct VHDXBlockTable {
    let layout: VHDXLayout
    let reader: ByteRangeReader

    static let payloadStates: [UInt64: String] = [0: "NOT_PRESENT", 1: "UNDEFINED", 2: "ZERO", 3: "UNMAPPED",
                                                   6: "FULLY_PRESENT", 7: "PARTIALLY_PRESENT"]

    var chunkCount: UInt64 { (layout.payloadBlockCount - 1) / layout.chunkRatio + 1 }

    /// The payload blocks of chunk `chunk`, in order (the last chunk may hold fewer).
    func chunk(_ chunk: UInt64) throws -> [VHDXBlockContent] {
        let first = chunk * layout.chunkRatio
        let count = min(layout.chunkRatio, layout.payloadBlockCount - first)
        let start = layout.payloadEntryIndex(first)
        // The bitmap entry follows a full chunk; a dynamic VHDX's BAT may end before the last one's.
        let entryCount = layout.hasParent ? Int(layout.chunkRatio) + 1 : Int(count)
        let data = try reader.readExactly(at: layout.batOffset + start * 8, count: entryCount * 8, what: "VHDX BAT")
        var bitmap: UInt64?
        if layout.hasParent {
            let entry = data.littleEndian(UInt64.self, at: Int(layout.chunkRatio) * 8)
            switch entry & 7 {
            case 0: bitmap = nil
            case 6: bitmap = try blockOffset(entry, length: VHDXLayout.megabyte, what: "sector bitmap block of chunk \(chunk)")
            default:
                throw StageError(.badInput, file: layout.file, "VHDX sector bitmap entry of chunk \(chunk) has the reserved state \(entry & 7)")
            }
        }
        var blocks: [VHDXBlockContent] = []
        blocks.reserveCapacity(Int(count))
        for index in 0..<Int(count) {
            let entry = data.littleEndian(UInt64.self, at: index * 8)
            let block = first + UInt64(index)
            switch entry & 7 {
            case 0, 1: blocks.append(.parent)
            case 2, 3: blocks.append(.zero)
            case 6: blocks.append(.data(fileOffset: try blockOffset(entry, length: layout.blockSize, what: "payload block \(block)")))
            case 7:
                guard layout.hasParent else {
                    throw StageError(.badInput, file: layout.file,
                                     "VHDX payload block \(block) is PARTIALLY_PRESENT in a file that has no parent")
                }
                guard let bitmap else {
                    throw StageError(.badInput, file: layout.file,
                                     "VHDX payload block \(block) is PARTIALLY_PRESENT but its chunk has no sector bitmap block")
                }
                blocks.append(.partial(fileOffset: try blockOffset(entry, length: layout.blockSize, what: "payload block \(block)"),
                                       bitmapOffset: bitmap))
            default:
                throw StageError(.badInput, file: layout.file, "VHDX payload block \(block) has the reserved BAT state \(entry & 7)")
            }
        }
        return blocks
    }

    /// Reads and checks every entry (the BAT alone: 8 bytes per MiB of disk at most), and
    /// that no two blocks the flattening reads share bytes of the file.
    ///
    /// Why the second check: the applier copies a present block once per entry that names it.
    /// Entries that all name one block would make a few MiB of checkpoint write the whole
    /// virtual disk densely, terabytes from a small file. With distinct blocks, what the
    /// flattening writes is bounded by the size of the files, which is what its space check
    /// reserves.
    func validateAll() throws {
        var ranges: [(start: UInt64, length: UInt64, what: String)] = []
        var claimed: UInt64 = 0
        func claim(_ start: UInt64, _ length: UInt64, _ what: @autoclosure () -> String) throws {
            claimed = claimed.saturatingAdd(length)
            guard claimed <= layout.fileSize else {
                throw StageError(.badInput, file: layout.file,
                                 "VHDX BAT names more present data than the file holds (\(layout.fileSize) bytes): its blocks share bytes of the file")
            }
            ranges.append((start, length, what()))
        }
        for index in 0..<chunkCount {
            let first = index * layout.chunkRatio
            var bitmap: UInt64?
            for (offset, content) in try chunk(index).enumerated() {
                let block = first + UInt64(offset)
                switch content {
                case .parent, .zero: continue
                case .data(let fileOffset):
                    try claim(fileOffset, layout.blockSize, "payload block \(block)")
                case .partial(let fileOffset, let bitmapOffset):
                    try claim(fileOffset, layout.blockSize, "payload block \(block)")
                    if bitmap == nil {
                        bitmap = bitmapOffset
                        try claim(bitmapOffset, VHDXLayout.megabyte, "sector bitmap block of chunk \(index)")
                    }
                }
            }
        }
        ranges.sort { $0.start < $1.start }
        for (previous, next) in zip(ranges, ranges.dropFirst()) where next.start < previous.start.saturatingAdd(previous.length) {
            throw StageError(.badInput, file: layout.file,
                             "VHDX \(next.what) at byte \(next.start) overlaps \(previous.what) at byte \(previous.start)")
        }
    }

    /// FileOffsetMB (bits 20-63) in bytes, checked to lie past the 1 MiB header section and
    /// to end inside the file.
    private func blockOffset(_ entry: UInt64, length: UInt64, what: String) throws -> UInt64 {
        let megabytes = entry >> 20
        let offset = try CheckedArithmetic.multiply(megabytes, VHDXLayout.megabyte, field: "VHDX \(what) offset", file: layout.file)
        let end = try CheckedArithmetic.add(offset, length, field: "VHDX \(what) end", file: layout.file)
        guard offset >= VHDXLayout.megabyte else {
            throw StageError(.badInput, file: layout.file, "VHDX \(what) lies at byte \(offset), inside the header section")
        }
        guard end <= layout.fileSize else {
            throw StageError(.badInput, file: layout.file,
                             "VHDX \(what) at byte \(offset) ends past the end of the file (\(layout.fileSize) bytes): truncated")
        }
        return offset
    }

    /// The first `count` bytes of the virtual disk of a VHDX without parent (a base), read
    /// through the BAT: what the firmware check looks at without running qemu.
    func leadingBytes(_ count: Int) throws -> Data {
        var result = Data(count: count)
        guard case .data(let offset) = try chunk(0).first else { return result }
        let wanted = Int(min(UInt64(count), layout.blockSize, layout.virtualDiskSize))
        let bytes = try reader.readExactly(at: offset, count: wanted, what: "VHDX payload block 0")
        result.replaceSubrange(0..<wanted, with: bytes)
        return result
    }
}
