import Foundation

/// What a qcow2 header says about files other than the image itself: a backing file, an
/// external data file, encryption. Read by us before qemu opens anything, because qemu
/// opens a data file by the name in the header (absolute, relative to its working
/// directory, or a protocol) and would copy that host file into our output as guest data.
///
/// Layout: docs/interop/qcow2.txt in qemu's source (big-endian fields; header extensions
/// follow the header, each `type u32, length u32, data padded to 8`, ended by type 0).
struct QcowHeader: Equatable {
    static let magic: [UInt8] = [0x51, 0x46, 0x49, 0xfb]
    /// Incompatible feature bit 2: the guest data lives in an external data file.
    static let externalDataFileBit: UInt64 = 1 << 2
    static let backingFormatExtension: UInt32 = 0xE279_2ACA
    static let dataFileExtension: UInt32 = 0x4441_5441
    /// qemu refuses longer backing names (block/qcow2.c); so do we, before reading one.
    static let maximumBackingNameBytes: UInt32 = 1023
    /// Extensions live in the first cluster; 2 MiB is qemu's largest cluster size.
    static let maximumExtensionArea: UInt64 = 2 << 20

    var version: UInt32
    var clusterBits: UInt32
    var encryptionMethod: UInt32
    var incompatibleFeatures: UInt64
    var backingName: String?
    var backingFormat: String?
    var dataFileName: String?

    var declaresDataFile: Bool { incompatibleFeatures & Self.externalDataFileBit != 0 || dataFileName != nil }

    init(reading reader: ByteRangeReader) throws {
        let file = reader.path
        let head = try reader.readExactly(at: 0, count: 72, what: "qcow2 header")
        guard head.hasPrefix(Self.magic) else {
            throw StageError(.badInput, file: file, "not a qcow2 image: no QFI\\xfb magic")
        }
        version = head.bigEndian(UInt32.self, at: 4)
        guard version == 2 || version == 3 else {
            throw StageError(.badInput, file: file, "qcow2 header: unsupported version \(version)")
        }
        let backingOffset = head.bigEndian(UInt64.self, at: 8)
        let backingSize = head.bigEndian(UInt32.self, at: 16)
        clusterBits = head.bigEndian(UInt32.self, at: 20)
        guard (9...21).contains(clusterBits) else {
            throw StageError(.badInput, file: file, "qcow2 header: cluster_bits \(clusterBits) is outside 9…21")
        }
        encryptionMethod = head.bigEndian(UInt32.self, at: 32)
        incompatibleFeatures = 0
        var extensionsStart: UInt64 = 72
        if version == 3 {
            let v3 = try reader.readExactly(at: 72, count: 32, what: "qcow2 version 3 header")
            incompatibleFeatures = v3.bigEndian(UInt64.self, at: 0)
            extensionsStart = UInt64(v3.bigEndian(UInt32.self, at: 28))
            guard extensionsStart >= 104 else {
                throw StageError(.badInput, file: file, "qcow2 header: header_length \(extensionsStart) is shorter than 104 bytes")
            }
        }
        let clusterSize = UInt64(1) << UInt64(clusterBits)
        if backingOffset != 0 {
            guard backingSize > 0, backingSize <= Self.maximumBackingNameBytes else {
                throw StageError(.badInput, file: file, "qcow2 header: backing_file_size \(backingSize) is outside 1…\(Self.maximumBackingNameBytes)")
            }
            let (end, overflow) = backingOffset.addingReportingOverflow(UInt64(backingSize))
            guard !overflow, end <= clusterSize else {
                throw StageError(.badInput, file: file, "qcow2 header: the backing file name (offset \(backingOffset)) lies outside the first cluster")
            }
            let bytes = try reader.readExactly(at: backingOffset, count: Int(backingSize), what: "qcow2 backing file name")
            backingName = String(decoding: bytes, as: UTF8.self)
        }
        let areaEnd = min(backingOffset != 0 ? backingOffset : clusterSize, clusterSize, Self.maximumExtensionArea)
        var position = extensionsStart
        while position + 8 <= areaEnd {
            let entry = try reader.readExactly(at: position, count: 8, what: "qcow2 header extension")
            let type = entry.bigEndian(UInt32.self, at: 0)
            let length = UInt64(entry.bigEndian(UInt32.self, at: 4))
            if type == 0 { break }
            let dataStart = position + 8
            guard length <= areaEnd - dataStart else {
                throw StageError(.badInput, file: file, "qcow2 header extension 0x\(String(type, radix: 16)) runs past the header area")
            }
            switch type {
            case Self.backingFormatExtension:
                backingFormat = String(decoding: try reader.readExactly(at: dataStart, count: Int(length), what: "qcow2 backing format"), as: UTF8.self)
            case Self.dataFileExtension:
                dataFileName = String(decoding: try reader.readExactly(at: dataStart, count: Int(length), what: "qcow2 data file name"), as: UTF8.self)
            default:
                break
            }
            // Data is padded to a multiple of 8; `length` is below 2 MiB here, so no overflow.
            position = dataStart + (length + 7) / 8 * 8
        }
    }
}
