/// The one legitimate way a qcow2 file is shorter than qemu-img's `image-end-offset`:
/// qemu writes the L1 table only as far as it has entries, so when the L1 table is the
/// last cluster (a new or small image) the file ends inside that cluster.
enum QcowTail {
    /// True when the cluster ending at `imageEnd` is the L1 table and all of its entries
    /// are in the file; any other shortfall is truncation.
    static func endsInShortL1Table(_ reader: ByteRangeReader, imageEnd: UInt64) throws -> Bool {
        let header = try reader.readExactly(at: 0, count: 48, what: "qcow2 header")
        guard header.hasPrefix([0x51, 0x46, 0x49, 0xFB]) else { return false }
        let clusterBits = header.bigEndian(UInt32.self, at: 20)
        guard (9...21).contains(clusterBits) else { return false }
        let clusterSize = UInt64(1) << clusterBits
        let l1Entries = UInt64(header.bigEndian(UInt32.self, at: 36))
        let l1Offset = header.bigEndian(UInt64.self, at: 40)
        guard imageEnd >= clusterSize, l1Offset == imageEnd - clusterSize,
              l1Entries <= clusterSize / 8 else { return false }
        return l1Offset + l1Entries * 8 <= reader.size
    }
}
