import Foundation

/// A GUID as MS-VHDX stores it: Data1, Data2, Data3 little-endian, Data4 as bytes.
struct VHDXGUID: Hashable, Sendable, CustomStringConvertible {
    let bytes: [UInt8]

    init(bytes: [UInt8]) { self.bytes = bytes }

    init(_ data: Data, at offset: Int) {
        bytes = Array(data[(data.startIndex + offset)..<(data.startIndex + offset + 16)])
    }

    /// `"CAA16737-FA36-4D43-B3B6-33F0AA44E76B"` or `"{caa16737-…}"`; nil when malformed.
    init?(text: String) {
        var hex = text.trimmingCharacters(in: .whitespaces)
        if hex.hasPrefix("{"), hex.hasSuffix("}") { hex = String(hex.dropFirst().dropLast()) }
        let groups = hex.split(separator: "-", omittingEmptySubsequences: false)
        guard groups.map(\.count) == [8, 4, 4, 4, 12] else { return nil }
        func bytes(of group: Substring) -> [UInt8]? {
            var result: [UInt8] = []
            var index = group.startIndex
            while index < group.endIndex {
                let next = group.index(index, offsetBy: 2)
                guard let byte = UInt8(group[index..<next], radix: 16) else { return nil }
                result.append(byte)
                index = next
            }
            return result
        }
        guard let d1 = bytes(of: groups[0]), let d2 = bytes(of: groups[1]), let d3 = bytes(of: groups[2]),
              let d4 = bytes(of: groups[3]), let d5 = bytes(of: groups[4]) else { return nil }
        self.bytes = d1.reversed() + d2.reversed() + d3.reversed() + d4 + d5
    }

    /// A GUID written in this source; malformed text (a typo) gives the zero GUID, which the
    /// tests rule out for every constant.
    static func constant(_ text: String) -> VHDXGUID {
        VHDXGUID(text: text) ?? VHDXGUID(bytes: [UInt8](repeating: 0, count: 16))
    }

    var isZero: Bool { bytes.allSatisfy { $0 == 0 } }

    /// Lower-case with braces, as a parent locator writes it.
    var description: String {
        func hex(_ slice: some Sequence<UInt8>) -> String { slice.map { String(format: "%02x", $0) }.joined() }
        return "{" + hex(bytes[0..<4].reversed()) + "-" + hex(bytes[4..<6].reversed()) + "-" + hex(bytes[6..<8].reversed())
            + "-" + hex(bytes[8..<10]) + "-" + hex(bytes[10..<16]) + "}"
    }
}

/// Where a differencing VHDX says its parent is (MS-VHDX 2.6.2.6.3). Only the relative path
/// is ever followed (see `VHDXChain`); the absolute ones are kept to name them in errors.
struct VHDXParentLocator: Sendable, Equatable {
    var linkage: String?
    var linkage2: String?
    var relativePath: String?
    var volumePath: String?
    var absoluteWin32Path: String?
}

/// The structure of one VHDX file, parsed from untrusted bytes per the public MS-VHDX
/// specification: file identifier, the two headers (the valid one with the higher sequence
/// number is current), the region table (BAT and metadata), and the metadata items a reader
/// needs. The BAT itself is read chunk by chunk (`VHDXBlockTable`) so a 64 TB disk's table
/// is never held in memory at once.
///
/// Every offset is checked against the file's size, every sum and product with checked
/// arithmetic; each CRC-32C is verified. A log that may hold entries (non-zero LogGuid) is
/// refused: replaying it means writing the file, and a file Hyper-V closed cleanly has none.
struct VHDXLayout: Sendable {
    static let fileSignature = Array("vhdxfile".utf8)
    static let headerOffsets: [UInt64] = [64 << 10, 128 << 10]
    static let regionTableOffsets: [UInt64] = [192 << 10, 256 << 10]
    static let headerSize = 4096
    static let regionTableSize = 64 << 10
    static let metadataTableSize = 64 << 10
    static let megabyte: UInt64 = 1 << 20

    static let batRegion = VHDXGUID.constant("2DC27766-F623-4200-9D64-115E9BFD4A08")
    static let metadataRegion = VHDXGUID.constant("8B7CA206-4790-4B9A-B8FE-575F050F886E")
    static let fileParametersItem = VHDXGUID.constant("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
    static let virtualDiskSizeItem = VHDXGUID.constant("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
    static let virtualDiskIDItem = VHDXGUID.constant("BECA12AB-B2E6-4523-93EF-C309E000C746")
    static let logicalSectorSizeItem = VHDXGUID.constant("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
    static let physicalSectorSizeItem = VHDXGUID.constant("CDA348C7-445D-4471-9CC9-E9885251C556")
    static let parentLocatorItem = VHDXGUID.constant("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
    static let vhdxParentLocatorType = VHDXGUID.constant("B04AEFB7-D19E-4A81-B789-25B8E9445913")

    let file: String
    let fileSize: UInt64
    let sequenceNumber: UInt64
    let dataWriteGUID: VHDXGUID
    let blockSize: UInt64
    let logicalSectorSize: UInt64
    let virtualDiskSize: UInt64
    let hasParent: Bool
    let parent: VHDXParentLocator?
    let batOffset: UInt64
    let batLength: UInt64
    /// Payload blocks per chunk: one sector bitmap block covers this many payload blocks.
    let chunkRatio: UInt64
    let payloadBlockCount: UInt64

    init(reading reader: ByteRangeReader) throws {
        file = reader.path
        fileSize = reader.size
        let identifier = try reader.readExactly(at: 0, count: 8, what: "VHDX file identifier")
        guard identifier.hasPrefix(Self.fileSignature) else {
            throw StageError(.badInput, file: file, "not a VHDX file (no 'vhdxfile' signature at byte 0)")
        }
        let header = try Self.currentHeader(reader)
        sequenceNumber = header.sequence
        dataWriteGUID = header.dataWrite

        let regions = try Self.regionTable(reader)
        guard let bat = regions[Self.batRegion], let metadata = regions[Self.metadataRegion] else {
            throw StageError(.badInput, file: file, "VHDX region table lacks the \(regions[Self.batRegion] == nil ? "BAT" : "metadata") region")
        }
        let batEnd = try CheckedArithmetic.add(bat.offset, bat.length, field: "VHDX BAT region end", file: file)
        let metadataEnd = try CheckedArithmetic.add(metadata.offset, metadata.length, field: "VHDX metadata region end", file: file)
        guard bat.offset >= metadataEnd || metadata.offset >= batEnd else {
            throw StageError(.badInput, file: file, "VHDX BAT and metadata regions overlap")
        }
        batOffset = bat.offset
        batLength = bat.length

        let items = try VHDXMetadata(reader: reader, offset: metadata.offset, length: metadata.length)
        let parameters = try items.required(Self.fileParametersItem, "File Parameters", size: 8)
        blockSize = UInt64(parameters.littleEndian(UInt32.self, at: 0))
        let flags = parameters.littleEndian(UInt32.self, at: 4)
        hasParent = flags & 2 != 0
        guard blockSize >= Self.megabyte, blockSize <= 256 * Self.megabyte, blockSize.nonzeroBitCount == 1 else {
            throw StageError(.badInput, file: file, "VHDX block size \(blockSize) is not a power of two from 1 MiB to 256 MiB")
        }
        logicalSectorSize = UInt64(try items.required(Self.logicalSectorSizeItem, "Logical Sector Size", size: 4).littleEndian(UInt32.self, at: 0))
        guard logicalSectorSize == 512 || logicalSectorSize == 4096 else {
            throw StageError(.badInput, file: file, "VHDX logical sector size \(logicalSectorSize) is neither 512 nor 4096")
        }
        virtualDiskSize = try items.required(Self.virtualDiskSizeItem, "Virtual Disk Size", size: 8).littleEndian(UInt64.self, at: 0)
        guard virtualDiskSize > 0, virtualDiskSize <= 64 << 40, virtualDiskSize % logicalSectorSize == 0 else {
            throw StageError(.badInput, file: file,
                             "VHDX virtual disk size \(virtualDiskSize) is not a non-zero multiple of the sector size up to 64 TB")
        }
        parent = hasParent ? try items.parentLocator() : nil

        // MS-VHDX 2.5: chunk ratio = 2^23 × logical sector size / block size (exact: both are powers of two).
        chunkRatio = ((1 << 23) * logicalSectorSize) / blockSize
        payloadBlockCount = (virtualDiskSize - 1) / blockSize + 1
        let bitmapBlockCount = (payloadBlockCount - 1) / chunkRatio + 1
        let entries = hasParent ? bitmapBlockCount * (chunkRatio + 1) : payloadBlockCount + (payloadBlockCount - 1) / chunkRatio
        guard entries * 8 <= batLength else {
            throw StageError(.badInput, file: file,
                             "VHDX BAT region of \(batLength) bytes is too small for its \(entries) entries: truncated BAT")
        }
    }

    /// The BAT entry of payload block `block` and of the sector bitmap of its chunk, by index.
    func payloadEntryIndex(_ block: UInt64) -> UInt64 { block + block / chunkRatio }
    func bitmapEntryIndex(chunk: UInt64) -> UInt64 { chunk * (chunkRatio + 1) + chunkRatio }

    private struct Header {
        var sequence: UInt64
        var dataWrite: VHDXGUID
    }

    /// The current header: of the two, the valid one (signature, CRC-32C, version) with the
    /// higher sequence number.
    private static func currentHeader(_ reader: ByteRangeReader) throws -> Header {
        var best: (header: Header, logGUID: VHDXGUID)?
        var problems: [String] = []
        for offset in headerOffsets {
            let data = try reader.readExactly(at: offset, count: headerSize, what: "VHDX header")
            guard data.hasPrefix(Array("head".utf8)) else { problems.append("header at \(offset): no 'head' signature"); continue }
            guard CRC32C.structureChecksum(data, fieldOffset: 4) == data.littleEndian(UInt32.self, at: 4) else {
                problems.append("header at \(offset): CRC-32C mismatch"); continue
            }
            guard data.littleEndian(UInt16.self, at: 66) == 1 else {
                problems.append("header at \(offset): version \(data.littleEndian(UInt16.self, at: 66)), not 1"); continue
            }
            let sequence = data.littleEndian(UInt64.self, at: 8)
            if best == nil || sequence > (best?.header.sequence ?? 0) {
                best = (Header(sequence: sequence, dataWrite: VHDXGUID(data, at: 32)), VHDXGUID(data, at: 48))
            }
        }
        if let logGUID = best?.logGUID, !logGUID.isZero {
            throw StageError(.badInput, file: reader.path,
                             "VHDX log is not empty (LogGuid \(logGUID)): the file was not closed cleanly; attach it once in Hyper-V (or Mount-VHD) so the log is replayed, then export again")
        }
        guard let header = best?.header else {
            throw StageError(.badInput, file: reader.path, "no valid VHDX header (\(problems.joined(separator: "; ")))")
        }
        return header
    }

    struct Region { var offset: UInt64; var length: UInt64 }

    /// The first region table copy that is valid; every region inside the file, 1 MiB aligned.
    private static func regionTable(_ reader: ByteRangeReader) throws -> [VHDXGUID: Region] {
        var problems: [String] = []
        for offset in regionTableOffsets {
            let data = try reader.readExactly(at: offset, count: regionTableSize, what: "VHDX region table")
            guard data.hasPrefix(Array("regi".utf8)) else { problems.append("table at \(offset): no 'regi' signature"); continue }
            guard CRC32C.structureChecksum(data, fieldOffset: 4) == data.littleEndian(UInt32.self, at: 4) else {
                problems.append("table at \(offset): CRC-32C mismatch"); continue
            }
            let count = Int(data.littleEndian(UInt32.self, at: 8))
            guard count <= 2047 else {
                throw StageError(.badInput, file: reader.path, "VHDX region table lists \(count) entries; at most 2047")
            }
            var regions: [VHDXGUID: Region] = [:]
            for index in 0..<count {
                let at = 16 + index * 32
                let guid = VHDXGUID(data, at: at)
                let region = Region(offset: data.littleEndian(UInt64.self, at: at + 16),
                                    length: UInt64(data.littleEndian(UInt32.self, at: at + 24)))
                let required = data.littleEndian(UInt32.self, at: at + 28) & 1 != 0
                guard guid == batRegion || guid == metadataRegion else {
                    if required {
                        throw StageError(.badInput, file: reader.path, "VHDX region \(guid) is marked required and is not one this reader knows")
                    }
                    continue
                }
                guard regions[guid] == nil else {
                    throw StageError(.badInput, file: reader.path, "VHDX region table lists region \(guid) twice")
                }
                let end = try CheckedArithmetic.add(region.offset, region.length, field: "VHDX region end", file: reader.path)
                guard region.offset >= megabyte, region.offset % megabyte == 0, region.length > 0, region.length % megabyte == 0 else {
                    throw StageError(.badInput, file: reader.path,
                                     "VHDX region \(guid) at \(region.offset), \(region.length) bytes, is not 1 MiB aligned past the header section")
                }
                guard end <= reader.size else {
                    throw StageError(.badInput, file: reader.path,
                                     "VHDX region \(guid) ends at byte \(end), past the end of the file (\(reader.size) bytes): truncated")
                }
                regions[guid] = region
            }
            return regions
        }
        throw StageError(.badInput, file: reader.path, "no valid VHDX region table (\(problems.joined(separator: "; ")))")
    }
}

/// The metadata table of a VHDX and the items it points at (MS-VHDX 2.6).
struct VHDXMetadata {
    let reader: ByteRangeReader
    let offset: UInt64
    private var items: [VHDXGUID: (offset: UInt64, length: Int)] = [:]
    private var file: String { reader.path }

    static let known: Set<VHDXGUID> = [VHDXLayout.fileParametersItem, VHDXLayout.virtualDiskSizeItem, VHDXLayout.virtualDiskIDItem,
                                        VHDXLayout.logicalSectorSizeItem, VHDXLayout.physicalSectorSizeItem, VHDXLayout.parentLocatorItem]

    init(reader: ByteRangeReader, offset: UInt64, length: UInt64) throws {
        self.reader = reader
        self.offset = offset
        let table = try reader.readExactly(at: offset, count: VHDXLayout.metadataTableSize, what: "VHDX metadata table")
        guard table.hasPrefix(Array("metadata".utf8)) else {
            throw StageError(.badInput, file: reader.path, "VHDX metadata table has no 'metadata' signature")
        }
        let count = Int(table.littleEndian(UInt16.self, at: 10))
        guard count <= 2047 else {
            throw StageError(.badInput, file: reader.path, "VHDX metadata table lists \(count) entries; at most 2047")
        }
        for index in 0..<count {
            let at = 32 + index * 32
            let guid = VHDXGUID(table, at: at)
            let itemOffset = UInt64(table.littleEndian(UInt32.self, at: at + 16))
            let itemLength = UInt64(table.littleEndian(UInt32.self, at: at + 20))
            let flags = table.littleEndian(UInt32.self, at: at + 24)
            let isUser = flags & 1 != 0, isRequired = flags & 4 != 0
            if isUser || !Self.known.contains(guid) {
                if isRequired {
                    throw StageError(.badInput, file: reader.path, "VHDX metadata item \(guid) is marked required and is not one this reader knows")
                }
                continue
            }
            guard itemLength <= VHDXLayout.megabyte,
                  itemLength == 0 || (itemOffset >= UInt64(VHDXLayout.metadataTableSize) && itemOffset + itemLength <= length) else {
                throw StageError(.badInput, file: reader.path,
                                 "VHDX metadata item \(guid) (\(itemLength) bytes at \(itemOffset)) lies outside the metadata region of \(length) bytes")
            }
            guard items[guid] == nil else {
                throw StageError(.badInput, file: reader.path, "VHDX metadata table lists item \(guid) twice")
            }
            items[guid] = (itemOffset, Int(itemLength))
        }
    }

    func required(_ guid: VHDXGUID, _ name: String, size: Int) throws -> Data {
        guard let item = items[guid] else {
            throw StageError(.badInput, file: file, "VHDX metadata lacks the \(name) item")
        }
        guard item.length >= size else {
            throw StageError(.badInput, file: file, "VHDX \(name) item is \(item.length) bytes; it needs \(size)")
        }
        return try reader.readExactly(at: offset + item.offset, count: size, what: "VHDX \(name) item")
    }

    /// The parent locator's key-value pairs (MS-VHDX 2.6.2.6).
    func parentLocator() throws -> VHDXParentLocator {
        guard let item = items[VHDXLayout.parentLocatorItem], item.length >= 20 else {
            throw StageError(.badInput, file: file, "differencing VHDX has no parent locator")
        }
        let data = try reader.readExactly(at: offset + item.offset, count: item.length, what: "VHDX parent locator")
        guard VHDXGUID(data, at: 0) == VHDXLayout.vhdxParentLocatorType else {
            throw StageError(.badInput, file: file, "VHDX parent locator type \(VHDXGUID(data, at: 0)) is not the VHDX locator type")
        }
        let count = Int(data.littleEndian(UInt16.self, at: 18))
        guard 20 + count * 12 <= data.count else {
            throw StageError(.badInput, file: file, "VHDX parent locator lists \(count) entries but holds \(data.count) bytes")
        }
        var values: [String: String] = [:]
        for index in 0..<count {
            let at = 20 + index * 12
            let key = try string(data, offset: Int(data.littleEndian(UInt32.self, at: at)), length: Int(data.littleEndian(UInt16.self, at: at + 8)))
            let value = try string(data, offset: Int(data.littleEndian(UInt32.self, at: at + 4)), length: Int(data.littleEndian(UInt16.self, at: at + 10)))
            guard values[key] == nil else {
                throw StageError(.badInput, file: file, "VHDX parent locator lists key '\(key)' twice")
            }
            values[key] = value
        }
        return VHDXParentLocator(linkage: values["parent_linkage"], linkage2: values["parent_linkage2"],
                                 relativePath: values["relative_path"], volumePath: values["volume_path"],
                                 absoluteWin32Path: values["absolute_win32_path"])
    }

    private func string(_ data: Data, offset: Int, length: Int) throws -> String {
        guard offset > 0, length > 0, length % 2 == 0, offset <= data.count, length <= data.count - offset else {
            throw StageError(.badInput, file: file, "VHDX parent locator entry (\(length) bytes at \(offset)) lies outside the item")
        }
        let slice = data[(data.startIndex + offset)..<(data.startIndex + offset + length)]
        guard let text = String(data: Data(slice), encoding: .utf16LittleEndian), !text.contains("\0") else {
            throw StageError(.badInput, file: file, "VHDX parent locator entry at \(offset) is not UTF-16 text")
        }
        return text
    }
}
