import Foundation

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum MS-VHDX puts in its
/// headers, region tables and log entries.
enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 {
            value = value & 1 == 1 ? (value >> 1) ^ 0x82F6_3B78 : value >> 1
        }
        return value
    }

    static func checksum(_ data: Data) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in data {
            crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        return crc ^ 0xFFFF_FFFF
    }

    /// The checksum of a VHDX structure: computed with its own 4-byte checksum field
    /// (at `fieldOffset`) set to zero, as the specification defines it.
    static func structureChecksum(_ data: Data, fieldOffset: Int) -> UInt32 {
        var copy = Data(data)
        let start = copy.startIndex + fieldOffset
        copy.replaceSubrange(start..<(start + 4), with: [0, 0, 0, 0])
        return checksum(copy)
    }
}
