import Foundation
import Testing
import TestSupport
@testable import Stages

@Suite("TarArchiveReader", .serialized)
struct TarArchiveReaderTests {
    @Test("lists members with the data offsets tar used (ustar, pax long path, GNU long name)", arguments: ["USTAR", "PAX", "GNU"])
    func listsMembers(format: String) async throws {
        let dir = try Scratch()
        let archive = dir.file("a.tar")
        let longName = format == "USTAR" ? "short.txt" : String(repeating: "d", count: 150) + ".vmdk"
        try await HostileArchiveFactory.write([.file("vm.ovf", "<Envelope/>"), .file(longName, "disk bytes"), .file("empty", "")],
                                        to: archive, format: format)
        let members = try TarArchiveReader(url: archive).members()
        #expect(members.map(\.name) == ["vm.ovf", longName, "empty"])
        #expect(members.map(\.size) == [11, 10, 0])
        let data = try Data(contentsOf: archive)
        let second = members[1]
        #expect(data.subdata(in: Int(second.dataOffset)..<Int(second.dataOffset + second.size)) == Data("disk bytes".utf8))
    }

    @Test("GNU tar's own ustar archives are read")
    func gnuTarArchive() async throws {
        let dir = try Scratch()
        try "hello".write(to: dir.file("one.txt"), atomically: true, encoding: .utf8)
        try TestImageFactory.writeRandom(at: dir.file("two.bin"), bytes: 5000)
        let archive = dir.file("b.tar")
        try await TestImageFactory.makeTar(at: archive, from: dir.url, members: ["one.txt", "two.bin"])
        let members = try TarArchiveReader(url: archive).members()
        #expect(members.map(\.name) == ["one.txt", "two.bin"])
        #expect(try await FileDigest.hash(.sha256, of: archive, offset: members[1].dataOffset, length: members[1].size)
                == TestImageFactory.referenceDigest(of: dir.file("two.bin")))
    }

    static let hostile: [(String, HostileArchiveFactory.Member, String)] = [
        ("dot-dot", .file("../evil", "x"), "'..'"),
        ("nested dot-dot", .file("a/../../evil", "x"), "'..'"),
        ("absolute", .file("/etc/evil", "x"), "absolute path"),
        ("symlink", .symlink("disk.vmdk", target: "/etc/shadow"), "symbolic link"),
        ("hardlink", .hardlink("disk.vmdk", target: "vm.ovf"), "hard link"),
        ("fifo", .fifo("pipe"), "fifo"),
        ("device", .characterDevice("null"), "device node"),
    ]

    @Test("hostile members are refused, naming archive and member", arguments: 0..<hostile.count)
    func hostileMember(index: Int) async throws {
        let (label, member, expected) = Self.hostile[index]
        let dir = try Scratch()
        let archive = dir.file("evil.ova")
        try await HostileArchiveFactory.write([.file("vm.ovf", "<Envelope/>"), member], to: archive)
        let error = #expect(throws: StageError.self, "\(label)") { try TarArchiveReader(url: archive).members() }
        #expect(error?.code == .badInput)
        #expect(error?.file == archive.path)
        #expect(error?.message.contains(expected) == true, "\(label): \(String(describing: error))")
    }

    @Test("duplicates, bad checksums, data past the end and garbage are refused")
    func malformed() async throws {
        let dir = try Scratch()
        let duplicate = dir.file("dup.tar")
        try await HostileArchiveFactory.write([.file("disk.vmdk", "a"), .file("./disk.vmdk", "b")], to: duplicate)
        let dupError = #expect(throws: StageError.self) { try TarArchiveReader(url: duplicate).members() }
        #expect(dupError?.message.contains("appears twice") == true)

        let good = dir.file("good.tar")
        try await HostileArchiveFactory.write([.file("vm.ovf", String(repeating: "x", count: 3000))], to: good)
        var bytes = try Data(contentsOf: good)
        bytes[3] ^= 0x20  // flip a bit in the first header's name
        let badSum = dir.file("badsum.tar")
        try bytes.write(to: badSum)
        let sumError = #expect(throws: StageError.self) { try TarArchiveReader(url: badSum).members() }
        #expect(sumError?.message.contains("checksum") == true)

        let cut = dir.file("cut.tar")
        try Data(try Data(contentsOf: good).prefix(512 + 1024)).write(to: cut)
        let cutError = #expect(throws: StageError.self) { try TarArchiveReader(url: cut).members() }
        #expect(cutError?.file == cut.path)
        #expect(cutError?.message.contains("run past the end") == true, "\(String(describing: cutError))")

        let random = dir.file("random.tar")
        try TestImageFactory.writeRandom(at: random, bytes: 4096)
        #expect(throws: StageError.self) { try TarArchiveReader(url: random).members() }
    }
}
