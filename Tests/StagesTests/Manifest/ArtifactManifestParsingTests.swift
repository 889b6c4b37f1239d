import Foundation
import Testing
@testable import Stages

/// Decoding and schema rules, without touching any disk file.
@Suite("ArtifactManifest parsing and validation")
struct ArtifactManifestParsingTests {
    private let example = ManifestFixtures.upstreamExample(disk0: "/exports/web01/web01-disk1.vmdk",
                                                           disk1: "/exports/web01/web01-disk2.vmdk",
                                                           disk0Checksum: "sha256:" + String(repeating: "ab", count: 32))

    /// The message of the `StageError` that `body` throws (fails the test when it does not).
    private func failure(_ body: () throws -> Any) -> StageError? {
        do {
            _ = try body()
            Issue.record("expected an error")
            return nil
        } catch let error as StageError {
            #expect(error.code == .badInput)
            return error
        } catch {
            Issue.record("unexpected error type: \(error)")
            return nil
        }
    }

    private func withDisk(_ index: Int, _ key: String, _ value: Any, in document: [String: Any]? = nil) -> [String: Any] {
        var document = document ?? example
        var disks = document["disks"] as? [[String: Any]] ?? []
        disks[index][key] = value
        document["disks"] = disks
        return document
    }

    @Test("the upstream example decodes field by field, the same from JSON and YAML", arguments: [ArtifactManifest.Syntax.json, .yaml])
    func upstreamExample(syntax: ArtifactManifest.Syntax) throws {
        let manifest = try ManifestFixtures.parseAndValidate(example, syntax: syntax)
        #expect(manifest.manifestVersion == "1.0")
        #expect(manifest.source?.vmName == "web01")
        #expect(manifest.source?.exportTimestamp == "2026-01-21T18:30:00Z")
        #expect(manifest.vm?.cpu == 4)
        #expect(manifest.vm?.memGB == 16)
        #expect(manifest.vm?.firmware == "uefi")
        #expect(manifest.disks.map(\.id) == ["disk-0", "disk-1"])
        #expect(manifest.disks.map(\.bootOrderHint) == [nil, 1])
        #expect(manifest.disks[0].checksum == "sha256:" + String(repeating: "ab", count: 32))
        #expect(manifest.disks[1].bytes == 536_870_912_000)
        #expect(manifest.nics?.first?.mac == "00-50-56-AB-CD-EF")
        #expect(manifest.notes?.count == 2)
        #expect(manifest.metadata?.tags?["vcenter_url"] == "https://vc.example/sdk")
        #expect(manifest.pipeline?.fix?.fstabMode == "stabilize-all")
        #expect(manifest.options?.report?.path == "report.json")
        #expect(manifest.unrecognisedKeys.isEmpty)
    }

    @Test("JSON and YAML spellings give the same manifest")
    func sameFromBothSyntaxes() throws {
        #expect(try ManifestFixtures.parseAndValidate(example, syntax: .json)
            == ManifestFixtures.parseAndValidate(example, syntax: .yaml))
    }

    @Test("unknown keys are accepted and listed by JSON path; free-form maps are not inspected")
    func unknownKeys() throws {
        var document = withDisk(0, "encryption", ["cipher": "aes"])
        document["delta_of"] = "job-7"
        document["configuration"] = ["hostname": "web01", "anything": ["goes": true]]
        document["hooks"] = ["pre_fix": ["/bin/true"]]
        var vm = document["vm"] as? [String: Any] ?? [:]
        vm["tpm"] = true
        document["vm"] = vm
        let manifest = try ManifestFixtures.parseAndValidate(document)
        #expect(manifest.unrecognisedKeys == ["delta_of", "disks[0].encryption", "vm.tpm"])
        #expect(manifest.configuration?["hostname"] == .string("web01"))
    }

    @Test("malformed JSON names the file and says it is not JSON")
    func malformedJSON() {
        let data = Data("{\n  \"manifest_version\": \"1.0\",\n  \"disks\": [ {\"id\": \"a\",, } ]\n}\n".utf8)
        let error = failure { try ArtifactManifest.parse(data, syntax: .json, file: "/q/web01.json") }
        #expect(error?.file == "/q/web01.json")
        #expect(error?.message.hasPrefix("not valid JSON at line 3, column 25") == true, "\(error?.message ?? "")")
    }

    @Test("malformed YAML names the file, says it is not YAML and where")
    func malformedYAML() {
        let data = Data("manifest_version: \"1.0\"\ndisks:\n  - id: a\n   bad: [unclosed\n".utf8)
        let error = failure { try ArtifactManifest.parse(data, syntax: .yaml, file: "/q/web01.yaml") }
        #expect(error?.file == "/q/web01.yaml")
        #expect(error?.message.hasPrefix("not valid YAML") == true)
        #expect(error?.message.contains("line") == true || error?.message.contains(":4:") == true)
    }

    @Test("a YAML alias bomb is refused before decoding")
    func yamlAliasBomb() {
        var text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        var previous = "a"
        for level in "bcdefgh" {
            text += "\(level): &\(level) [" + Array(repeating: "*\(previous)", count: 10).joined(separator: ", ") + "]\n"
            previous = String(level)
        }
        text += "manifest_version: \"1.0\"\ndisks: *\(previous)\n"
        let error = failure { try ArtifactManifest.parse(Data(text.utf8), syntax: .yaml, file: "bomb.yaml") }
        #expect(error?.message.contains("more than") == true)
    }

    @Test("a value of the wrong type is reported at its JSON path")
    func typeMismatch() {
        let error = failure { try ManifestFixtures.parseAndValidate(withDisk(1, "bytes", "lots")) }
        #expect(error?.message == "disks[1].bytes: expected an integer")
    }

    @Test("a missing required key is reported at its JSON path")
    func missingKey() {
        var disks = example["disks"] as? [[String: Any]] ?? []
        disks[1].removeValue(forKey: "local_path")
        var document = example
        document["disks"] = disks
        let error = failure { try ManifestFixtures.parseAndValidate(document) }
        #expect(error?.message == "disks[1].local_path: required key is missing")
    }

    @Test("manifest_version must be 1.0", arguments: ["2.0", "1", "1.1", ""])
    func wrongVersion(version: String) {
        var document = example
        document["manifest_version"] = version
        let error = failure { try ManifestFixtures.parseAndValidate(document) }
        #expect(error?.message.hasPrefix("manifest_version: unsupported version '\(version)'") == true)
    }

    @Test("a relative local_path is refused with the disk's JSON path", arguments: ["web01-disk2.vmdk", "./x.vmdk", "../x.vmdk", ""])
    func relativePath(path: String) {
        let error = failure { try ManifestFixtures.parseAndValidate(withDisk(1, "local_path", path), file: "web01.json") }
        #expect(error?.description == "web01.json: disks[1].local_path: must be an absolute path (got '\(path)')")
    }

    @Test("duplicate disk ids are refused, naming the first")
    func duplicateIDs() {
        let error = failure { try ManifestFixtures.parseAndValidate(withDisk(1, "id", "disk-0")) }
        #expect(error?.message == "disks[1].id: 'disk-0' is already the id of disks[0]; disk ids must be unique")
    }

    @Test("ids outside [a-zA-Z0-9_-] are refused", arguments: ["disk 0", "../etc", "disk/0", "dísk", "", "a.b"])
    func badIDCharacters(id: String) {
        let error = failure { try ManifestFixtures.parseAndValidate(withDisk(0, "id", id)) }
        #expect(error?.message.hasPrefix("disks[0].id: '\(id)' must be non-empty and contain only") == true)
    }

    @Test("checksums must be sha256: plus 64 lowercase hex digits",
          arguments: ["sha256:" + String(repeating: "AB", count: 32), String(repeating: "ab", count: 32),
                      "sha256:abc", "sha1:" + String(repeating: "a", count: 40), "sha256:" + String(repeating: "g", count: 64),
                      "sha256:" + String(repeating: "a", count: 65)])
    func badChecksumFormat(checksum: String) {
        let error = failure { try ManifestFixtures.parseAndValidate(withDisk(0, "checksum", checksum)) }
        #expect(error?.message.hasPrefix("disks[0].checksum: must be 'sha256:' followed by 64 lowercase hex digits") == true)
    }

    @Test("other schema rules: formats, sizes, hints, firmware, MACs, at least one disk")
    func otherRules() {
        #expect(failure { try ManifestFixtures.parseAndValidate(withDisk(0, "source_format", "iso")) }?.message
            .hasPrefix("disks[0].source_format: must be one of qcow2, raw, vdi, vhd, vhdx, vmdk") == true)
        #expect(failure { try ManifestFixtures.parseAndValidate(withDisk(0, "bytes", -1)) }?.message
            == "disks[0].bytes: must be 0 or more (got -1)")
        #expect(failure { try ManifestFixtures.parseAndValidate(withDisk(1, "boot_order_hint", -1)) }?.message
            == "disks[1].boot_order_hint: must be 0 or more (got -1)")
        var document = example
        document["vm"] = ["firmware": "efi"]
        #expect(failure { try ManifestFixtures.parseAndValidate(document) }?.message.hasPrefix("vm.firmware:") == true)
        document = example
        document["nics"] = [["mac": "00:50:56:ab:cd"]]
        #expect(failure { try ManifestFixtures.parseAndValidate(document) }?.message.hasPrefix("nics[0].mac:") == true)
        document = example
        document["disks"] = [[String: Any]]()
        #expect(failure { try ManifestFixtures.parseAndValidate(document) }?.message == "disks: must list at least one disk")
        document.removeValue(forKey: "disks")
        #expect(failure { try ManifestFixtures.parseAndValidate(document) }?.message == "disks: required key is missing")
    }

    @Test("informational enums with unknown values are facts, not errors")
    func informationalValues() throws {
        var document = withDisk(1, "disk_type", "swap")
        document["vm"] = ["os_hint": "bsd", "cpu": 0]
        let manifest = try ManifestFixtures.parseAndValidate(document)
        #expect(manifest.advisoryFacts.count == 3)
    }
}

@Suite("ArtifactManifest boot order and directives")
struct ArtifactManifestBootOrderTests {
    private func disks(_ hints: [Int?], types: [String?]? = nil) -> [ArtifactManifest.Disk] {
        hints.enumerated().map { index, hint in
            ArtifactManifest.Disk(id: "disk-\(index)", sourceFormat: "raw", bytes: 0, localPath: "/d\(index)",
                                  checksum: nil, bootOrderHint: hint, label: nil, diskType: types?[index])
        }
    }

    @Test("no hints at all: every hint stays nil (never 999); the first disk is the boot candidate")
    func noHints() {
        let resolution = ArtifactManifestBootOrder.resolve(disks([nil, nil, nil]))
        #expect(resolution.hints == [nil, nil, nil])
        let vm = VMDescription(name: "x", disks: resolution.hints.map { SourceDisk(id: "d", locator: DiskLocator(path: "/d", format: "raw"), bootOrderHint: $0) }, origin: "manifest")
        #expect(vm.bootDiskIndex == 0)
    }

    /// hypersdk's builder output: Go's omitempty drops hint 0 from disk-0 while disk-1 carries 1.
    /// Python read the missing hint as 999 and booted disk-1 (the data disk). A missing hint
    /// among hinted disks is read as 0, so disk-0 boots.
    @Test("upstream example: omitted hint (Go's 0) beats hint 1, so disk-0 boots")
    func upstreamOmitempty() {
        #expect(ArtifactManifestBootOrder.resolve(disks([nil, 1])).hints == [0, 1])
        #expect(ArtifactManifestBootOrder.resolve(disks([nil, 1, 2])).hints == [0, 1, 2])
        // The boot disk need not be first: disk-2 had hint 0 and was omitted.
        #expect(ArtifactManifestBootOrder.resolve(disks([2, 1, nil])).hints == [2, 1, 0])
    }

    @Test("an explicit 0 wins over an omitted hint (both read as 0)")
    func explicitZeroWins() {
        #expect(ArtifactManifestBootOrder.resolve(disks([nil, 0])).hints == [1, 0])
        #expect(ArtifactManifestBootOrder.resolve(disks([nil, 5, 0, nil])).hints == [1, 3, 0, 2])
    }

    @Test("explicit hints order the disks; equal hints keep manifest order; ranks, not raw values")
    func explicitHints() {
        #expect(ArtifactManifestBootOrder.resolve(disks([999, 999])).hints == [0, 1])
        #expect(ArtifactManifestBootOrder.resolve(disks([7, 3, 999])).hints == [1, 0, 2])
    }

    @Test("disk_type boot is not used, but a disagreement is a warning fact")
    func diskTypeDisagreement() {
        let resolution = ArtifactManifestBootOrder.resolve(disks([1, 0], types: ["boot", "data"]))
        #expect(resolution.hints == [1, 0])
        #expect(resolution.facts.contains { $0.hasPrefix("warning: disk_type marks disk-0 as boot") })
        #expect(!ArtifactManifestBootOrder.resolve(disks([nil, 1], types: ["boot", "data"])).facts.contains { $0.hasPrefix("warning") })
    }

    @Test("a manifest may only disable fixes; everything else is reported, not applied")
    func directives() throws {
        var document = ManifestFixtures.minimal(disks: [["id": "a", "local_path": "/a"]])
        document["pipeline"] = ["fix": ["enabled": false, "regen_initramfs": false, "update_grub": false,
                                        "fstab_mode": "noop", "remove_vmware_tools": false],
                                "convert": ["enabled": false, "compress": true]]
        document["output"] = ["directory": "/elsewhere"]
        document["hooks"] = ["pre_fix": ["rm -rf /"]]
        let manifest = try ManifestFixtures.parseAndValidate(document)
        var options = ConversionOptions()
        options.removeVMwareTools = true
        let restricted = manifest.restricting(options)
        #expect(!restricted.fixGuest && !restricted.regenInitramfs && !restricted.updateGrub && !restricted.removeVMwareTools)
        #expect(restricted.fstabMode == .noop)
        #expect(restricted.compress == options.compress)
        #expect(restricted.outFormat == options.outFormat)
        let facts = manifest.directiveFacts
        #expect(facts.contains { $0.hasPrefix("manifest hooks not applied") })
        #expect(facts.contains { $0.hasPrefix("manifest output not applied") })
        #expect(facts.contains { $0.hasPrefix("manifest pipeline.convert.enabled: false not applied") })

        // Enabling requests change nothing.
        var enabling = ManifestFixtures.minimal(disks: [["id": "a", "local_path": "/a"]])
        enabling["pipeline"] = ["fix": ["enabled": true, "remove_vmware_tools": true, "fstab_mode": "bypath-only"]]
        let permissive = try ManifestFixtures.parseAndValidate(enabling)
        var off = ConversionOptions()
        off.fixGuest = false
        #expect(permissive.restricting(off) == off)
        #expect(permissive.restricting(ConversionOptions()) == ConversionOptions())
    }
}
