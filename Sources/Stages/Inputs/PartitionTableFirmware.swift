import Foundation

/// The firmware a disk's partition table implies, from its first sectors alone: a GPT holding
/// an EFI System Partition boots UEFI (a Hyper-V generation 2 VM); a GPT with a BIOS boot
/// partition, or a classic MBR, boots BIOS; anything else says nothing. Pure: the caller
/// reads the bytes (`leadingBytes` should hold the first 1 MiB; entries beyond it are not looked at).
enum PartitionTableFirmware {
    /// C12A7328-F81F-11D2-BA4B-00A0C93EC93B as stored on disk.
    static let efiSystemPartition = VHDXGUID.constant("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
    /// 21686148-6449-6E6F-744E-656564454649 ("Hah!IdontNeedEFI").
    static let biosBootPartition = VHDXGUID.constant("21686148-6449-6E6F-744E-656564454649")

    static func firmware(leadingBytes data: Data, sectorSize: Int) -> Firmware {
        guard sectorSize > 0, data.count >= sectorSize * 2 else { return .unknown }
        if data.hasPrefix(Array("EFI PART".utf8), at: sectorSize) {
            return gptFirmware(data, header: sectorSize, sectorSize: sectorSize)
        }
        guard data.count >= 512, data[data.startIndex + 510] == 0x55, data[data.startIndex + 511] == 0xAA else { return .unknown }
        // A protective MBR (type 0xEE) whose GPT we did not find says nothing.
        let types = (0..<4).map { data[data.startIndex + 446 + $0 * 16 + 4] }
        if types.contains(0xEE) { return .unknown }
        return types.contains(where: { $0 != 0 }) ? .bios : .unknown
    }

    private static func gptFirmware(_ data: Data, header: Int, sectorSize: Int) -> Firmware {
        guard data.count >= header + 92 else { return .unknown }
        let entriesLBA = data.littleEndian(UInt64.self, at: header + 72)
        let count = UInt64(data.littleEndian(UInt32.self, at: header + 80))
        let entrySize = UInt64(data.littleEndian(UInt32.self, at: header + 84))
        guard entrySize >= 128, entrySize <= 4096,
              entriesLBA < UInt64(data.count), count <= 4096 else { return .unknown }
        let start = entriesLBA * UInt64(sectorSize)
        var sawBIOSBoot = false
        for index in 0..<count {
            let at = start + index * entrySize
            guard at + 16 <= UInt64(data.count) else { break }
            let type = VHDXGUID(data, at: Int(at))
            if type == efiSystemPartition { return .uefi }
            if type == biosBootPartition { sawBIOSBoot = true }
        }
        return sawBIOSBoot ? .bios : .unknown
    }
}
