import Foundation
import Testing
import TestSupport
@testable import Stages

@Suite("ConversionMetadata")
struct ConversionMetadataTests {
    static func sample() -> ConversionMetadata {
        ConversionMetadata(
            createdAt: Date(timeIntervalSince1970: 1_767_225_600.25),
            tool: .init(version: "0.1.0", qemuImgVersion: "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)", libguestfsVersion: "1.48.6"),
            source: .init(path: "/queue/web01.ova", kind: .ova, format: "vmdk", size: 123_456_789,
                          sha256: String(repeating: "ab", count: 32),
                          identity: .init(device: 2049, inode: 131_075, size: 123_456_789, mtime: 1_767_225_000.5)),
            vm: .init(VMDescription(name: "web01", vcpus: 2, memoryMiB: 4096, firmware: .uefi, disks: [],
                                    nics: [NetworkInterface(mac: "00:50:56:ab:cd:ef", network: "VM Network")], origin: "ovf")),
            inspection: ["type": .string("linux"), "distro": .string("debian"), "major_version": .number(12),
                         "mountpoints": .object(["/": .string("/dev/sda1")]), "apps": .array([.string("openssh-server")]),
                         "efi": .bool(true), "product_variant": .null],
            fixes: [.init(area: "fstab", file: "/etc/fstab", before: "/dev/sda1 / ext4 defaults 0 1",
                          after: "UUID=0d6f… / ext4 defaults 0 1")],
            outputs: [.init(name: "web01.qcow2", path: "/out/web01/web01.qcow2", format: "qcow2", size: 1 << 30,
                            sha256: String(repeating: "cd", count: 32), virtualSize: 8 << 30),
                      .init(name: "domain.xml", path: "/out/web01/domain.xml", format: "xml", size: 2048, sha256: nil)],
            stages: [.init(name: "probe", status: "completed", startedAt: "2026-01-01T00:00:00.000Z",
                           finishedAt: "2026-01-01T00:00:00.120Z", seconds: 0.12),
                     .init(name: "fix", status: "skipped", reason: "fix_guest is off")])
    }

    @Test("round-trips through JSON")
    func roundTrip() throws {
        let metadata = Self.sample()
        let data = try MetadataWriter.encode(metadata)
        #expect(try MetadataWriter.decode(data) == metadata)
    }

    @Test("is valid JSON with the documented keys")
    func documentedKeys() async throws {
        let data = try MetadataWriter.encode(Self.sample())
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(Set(object.keys) == ["schema", "created_at", "tool", "source", "vm", "inspection", "fixes", "outputs", "stages"])
        #expect(object["schema"] as? String == "hyper2kvm.metadata/1")
        #expect(object["created_at"] as? String == "2026-01-01T00:00:00.250Z")
        let tool = try #require(object["tool"] as? [String: Any])
        #expect(Set(tool.keys) == ["name", "version", "qemu_img_version", "libguestfs_version"])
        let source = try #require(object["source"] as? [String: Any])
        #expect(Set(source.keys) == ["path", "kind", "format", "size", "sha256", "identity"])
        #expect(source["kind"] as? String == "ova")
        let vm = try #require(object["vm"] as? [String: Any])
        #expect(Set(vm.keys) == ["name", "vcpus", "memory_mib", "firmware", "nics"])
        let outputs = try #require(object["outputs"] as? [[String: Any]])
        #expect(Set(outputs[0].keys) == ["name", "path", "format", "size", "sha256", "virtual_size"])
        #expect(Set(outputs[1].keys) == ["name", "path", "format", "size"])
        let stages = try #require(object["stages"] as? [[String: Any]])
        #expect(Set(stages[0].keys) == ["name", "status", "started_at", "finished_at", "seconds"])
        #expect(stages[1]["reason"] as? String == "fix_guest is off")
        let inspection = try #require(object["inspection"] as? [String: Any])
        #expect(inspection["product_variant"] is NSNull)

        // What the fix stage did not run, its notes and its step times, when it ran.
        var fixed = Self.sample()
        fixed.fixSkipped = [SkippedGuestFix(area: "bootloader", reason: "update-grub not run: …")]
        fixed.fixWarnings = ["/etc/fstab: /dev/sdz1 names no disk of this guest; left unchanged"]
        fixed.fixSteps = [.init(step: "launch", seconds: 14.5), .init(step: "initramfs", seconds: 88.25)]
        let fixedObject = try #require(try JSONSerialization.jsonObject(with: MetadataWriter.encode(fixed)) as? [String: Any])
        #expect((fixedObject["fix_skipped"] as? [[String: Any]])?.first?["area"] as? String == "bootloader")
        #expect((fixedObject["fix_warnings"] as? [String])?.count == 1)
        #expect((fixedObject["fix_steps"] as? [[String: Any]])?.map { Set($0.keys) } == [["step", "seconds"], ["step", "seconds"]])
        #expect(try MetadataWriter.decode(MetadataWriter.encode(fixed)) == fixed)

        // python's parser agrees it is JSON.
        let directory = try Scratch()
        let file = directory.file("metadata.json")
        try MetadataWriter.write(Self.sample(), to: file)
        let (status, output) = try await OutputTestImages.status("python3", ["-m", "json.tool", file.path])
        #expect(status == 0, "\(output)")
    }

    @Test("keys are sorted and the bytes are deterministic")
    func deterministic() throws {
        let first = try MetadataWriter.encode(Self.sample())
        let second = try MetadataWriter.encode(Self.sample())
        #expect(first == second)
        let text = String(decoding: first, as: UTF8.self)
        let created = try #require(text.range(of: "\"created_at\""))
        let fixes = try #require(text.range(of: "\"fixes\""))
        let vm = try #require(text.range(of: "\"vm\""))
        #expect(created.lowerBound < fixes.lowerBound && fixes.lowerBound < vm.lowerBound)
        #expect(text.hasSuffix("}\n"))
        #expect(text.contains("/out/web01/web01.qcow2"), "slashes are not escaped")
    }

    @Test("absent optional values are omitted")
    func omitsAbsent() throws {
        let metadata = ConversionMetadata(
            createdAt: Date(timeIntervalSince1970: 0),
            tool: .init(version: "0.1.0", qemuImgVersion: "7.2.22"),
            source: .init(path: "/q/d.raw", kind: .raw, format: "raw", size: 1),
            vm: .init(name: "d"))
        let text = String(decoding: try MetadataWriter.encode(metadata), as: UTF8.self)
        for key in ["inspection", "sha256", "libguestfs_version", "identity", "vcpus", "memory_mib",
                    "fix_skipped", "fix_warnings", "fix_steps"] {
            #expect(!text.contains("\"\(key)\""), "\(key) in \(text)")
        }
        #expect(try MetadataWriter.decode(Data(text.utf8)) == metadata)
    }

    @Test("a document that is not metadata is a bad-input error naming the file")
    func rejectsGarbage() {
        do {
            _ = try MetadataWriter.decode(Data("{\"schema\": 1}".utf8), file: "/out/x/metadata.json")
            Issue.record("decoded garbage")
        } catch let error as StageError {
            #expect(error.code == .badInput)
            #expect(error.file == "/out/x/metadata.json")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
