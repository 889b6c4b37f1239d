import Foundation
import Testing
import TestSupport
@testable import Stages

/// One hand-made header per overflow class fixed in the parsers of untrusted bytes. Before
/// the fix each of these trapped the Swift runtime ("arithmetic overflow"), which in the
/// daemon kills every job with it; now each is a `.badInput` naming the field.
@Suite("HostileHeaders", .serialized)
struct HostileHeaderTests {
    // MARK: - Sparse VMDK header

    /// A 512-byte KDMV header with plausible fields, then `patch` applied (offset → little-endian UInt64).
    static func sparseHeader(_ patch: [Int: UInt64] = [:]) -> Data {
        var header = Data(count: 512)
        header.replaceSubrange(0..<4, with: Array("KDMV".utf8))
        func put(_ value: UInt64, at offset: Int, bytes: Int) {
            for index in 0..<bytes { header[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
        }
        put(1, at: 4, bytes: 4)        // version
        put(2048, at: 12, bytes: 8)    // capacity (sectors)
        put(128, at: 20, bytes: 8)     // grain size (sectors)
        put(512, at: 44, bytes: 4)     // grain table entries
        put(1, at: 56, bytes: 8)       // grain directory sector
        for (offset, value) in patch { put(value, at: offset, bytes: 8) }
        return header
    }

    static func reader(for data: Data, in dir: Scratch, name: String = "hostile.vmdk") throws -> ByteRangeReader {
        let url = dir.file(name)
        try data.write(to: url)
        return try ByteRangeReader(path: url.path)
    }

    @Test("sparse VMDK descriptorOffset × 512 overflowing is refused (trapped before)")
    func sparseDescriptorOffset() throws {
        let dir = try Scratch()
        let reader = try Self.reader(for: Self.sparseHeader([28: 1 << 60, 36: 1]), in: dir)
        let layout = try SparseVMDKLayout(reading: reader)
        let error = #expect(throws: StageError.self) { _ = try layout.embeddedDescriptor(in: reader) }
        #expect(error?.code == .badInput)
        #expect(error?.file == reader.path)
        #expect(error?.message.contains("descriptorOffset") == true, "\(String(describing: error))")
    }

    @Test("sparse VMDK gdOffset × 512 overflowing is refused (trapped before)")
    func sparseGrainDirectoryOffset() throws {
        let dir = try Scratch()
        let reader = try Self.reader(for: Self.sparseHeader([56: 1 << 60]), in: dir)
        let error = #expect(throws: StageError.self) { try SparseVMDKLayout(reading: reader).verifyComplete(in: reader) }
        #expect(error?.code == .badInput)
        #expect(error?.message.contains("gdOffset") == true, "\(String(describing: error))")
    }

    @Test("a sparse VMDK whose header and footer point the grain directory at the end is refused")
    func sparseGrainDirectoryAtEndTwice() throws {
        let dir = try Scratch()
        var file = Self.sparseHeader([56: .max])
        file.append(Data(count: 1024))
        file.append(Self.sparseHeader([56: .max]))
        file.append(Data(count: 512))
        let reader = try Self.reader(for: file, in: dir)
        let error = #expect(throws: StageError.self) { _ = try SparseVMDKLayout(reading: reader) }
        #expect(error?.code == .badInput)
    }

    @Test("a sparse VMDK of capacity 0 with an embedded descriptor (qemu opens its extents) is refused")
    func sparseCapacityZeroDescriptor() throws {
        let dir = try Scratch()
        var file = Self.sparseHeader([12: 0, 28: 1, 36: 1])
        var text = Data("# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 8 FLAT \"/etc/hostname\" 0\n".utf8)
        text += Data(count: 512 - text.count)
        file += text + Data(count: 1024)
        let reader = try Self.reader(for: file, in: dir)
        let error = #expect(throws: StageError.self) { _ = try SparseVMDKLayout(reading: reader) }
        #expect(error?.message.contains("capacity 0 and an embedded descriptor") == true, "\(String(describing: error))")
    }

    // MARK: - VMDK descriptor

    @Test("flat extent offset + sectors, × 512, overflowing is refused (trapped before)",
          arguments: [(UInt64(1) << 62, UInt64(1) << 62), (UInt64(Int64.max), UInt64(Int64.max))])
    func flatExtentEnd(sectors: UInt64, offset: UInt64) throws {
        let dir = try Scratch()
        try Data(count: 4096).write(to: dir.file("x-flat.vmdk"))
        let text = "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n"
            + "RW \(sectors) FLAT \"x-flat.vmdk\" \(offset)\n"
        let descriptor = try VMDKDescriptor.parse(text, file: dir.file("x.vmdk").path)
        let error = #expect(throws: StageError.self) { _ = try descriptor.validatedExtentFiles(besides: dir.file("x.vmdk")) }
        #expect(error?.code == .badInput)
        #expect(error?.file == dir.file("x.vmdk").path)
        #expect(error?.message.contains("extent 'x-flat.vmdk'") == true, "\(String(describing: error))")
    }

    // MARK: - Tar

    /// A ustar header block with a valid checksum.
    static func tarHeader(name: String, size: Int, type: UInt8) -> Data {
        var header = Data(count: 512)
        header.replaceSubrange(0..<name.utf8.count, with: Array(name.utf8))
        let octal = Array(String(format: "%011o", size).utf8)
        header.replaceSubrange(124..<135, with: octal)
        header.replaceSubrange(100..<107, with: Array("0000644".utf8))
        header[156] = type
        header.replaceSubrange(257..<263, with: Array("ustar\0".utf8))
        header.replaceSubrange(263..<265, with: Array("00".utf8))
        header.replaceSubrange(148..<156, with: Array("        ".utf8))
        let sum = header.reduce(0) { $0 + Int($1) }
        header.replaceSubrange(148..<155, with: Array(String(format: "%06o\0", sum).utf8))
        return header
    }

    static func padded(_ data: Data) -> Data {
        data + Data(count: (512 - data.count % 512) % 512)
    }

    static func archive(pax records: String, in dir: Scratch) throws -> URL {
        let body = Data(records.utf8)
        var tar = tarHeader(name: "PaxHeaders/x", size: body.count, type: UInt8(ascii: "x"))
        tar += padded(body)
        tar += tarHeader(name: "x.ovf", size: 0, type: UInt8(ascii: "0"))
        tar += Data(count: 1024)
        let url = dir.file("hostile.ova")
        try tar.write(to: url)
        return url
    }

    @Test("a pax record length near Int.max is refused (cursor + length trapped before)",
          arguments: ["6 a=b\n9223372036854775807 path=x\n", "6 a=b\n9223372036854775000 path=x\n", "-5 path=x\n"])
    func paxRecordLength(records: String) throws {
        let dir = try Scratch()
        let url = try Self.archive(pax: records, in: dir)
        let error = #expect(throws: StageError.self) { _ = try TarArchiveReader(url: url).members() }
        #expect(error?.code == .badInput)
        #expect(error?.file == url.path)
        #expect(error?.message.contains("record length") == true, "\(String(describing: error))")
    }

    @Test("a pax size record that is not a byte count is refused, not ignored",
          arguments: ["20 size=-1234567890\n", "13 size=0x10\n", "32 size=99999999999999999999999\n"])
    func paxSizeRecord(records: String) throws {
        let dir = try Scratch()
        let url = try Self.archive(pax: records, in: dir)
        let error = #expect(throws: StageError.self) { _ = try TarArchiveReader(url: url).members() }
        #expect(error?.message.contains("size record") == true, "\(String(describing: error))")
    }

    @Test("a well-formed pax path record is still honoured")
    func paxPath() throws {
        let dir = try Scratch()
        let record = "path=long-name.ovf\n"
        let line = "\(record.utf8.count + 3) \(record)"
        let url = try Self.archive(pax: line, in: dir)
        #expect(try TarArchiveReader(url: url).members().map(\.name) == ["long-name.ovf"])
    }

    @Test("a pax size meant for the next member does not change how far the next extended header is skipped")
    func paxSizeDoesNotApplyToExtendedHeaders() throws {
        let dir = try Scratch()
        let first = Data("12 size=600\n".utf8)
        let second = Data("19 path=a-long.ovf\n".utf8)
        var tar = Self.tarHeader(name: "PaxHeaders/1", size: first.count, type: UInt8(ascii: "x")) + Self.padded(first)
        tar += Self.tarHeader(name: "PaxHeaders/2", size: second.count, type: UInt8(ascii: "x")) + Self.padded(second)
        tar += Self.tarHeader(name: "x.ovf", size: 0, type: UInt8(ascii: "0")) + Data(count: 1024)
        let url = dir.file("pax-size.ova")
        try tar.write(to: url)
        let members = try TarArchiveReader(url: url).members()
        #expect(members.map(\.name) == ["a-long.ovf"])
        #expect(members.first?.size == 600)
    }
}
