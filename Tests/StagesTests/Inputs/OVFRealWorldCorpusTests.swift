import Foundation
import Testing
import TestSupport
@testable import Stages

/// Descriptors that real products and tools wrote, from the test data of the Common OVF Tool
/// (PyPI `cot` 2.2.1, installed into the test cache by `scripts/fetch-test-data`, never
/// committed): VMware OVF 0.9, a vSphere 1.0 export, VirtualBox OVF 2.0, Cisco appliances
/// with deployment options and CD-ROM images, and cot's deliberately odd ones.
///
/// Each is packed into an OVA as found, with the files it references that the package ships
/// (its own small streamOptimized VMDKs, ISO, manifest), and read by the product's reader,
/// which runs `qemu-img info` on every disk; a disk read is then converted by `qemu-img` from
/// where the reader located it and compared with the file that went in. Each converts, or is
/// refused with the reason chosen for it. No XML is changed, except in the one test that
/// swaps in a disk with content (the File's size then follows the disk).
@Suite("OVF real-world corpus (cot test data)", .serialized)
struct OVFRealWorldCorpusTests {
    static var corpus: URL {
        URL(fileURLWithPath: (ProcessInfo.processInfo.environment["HYPER2KVM_TEST_CACHE"] ?? "/var/cache/hyper2kvm-test") + "/cot-2.2.1")
    }

    /// The corpus file, failing the test (not skipping it) when the data is not installed.
    static func corpusFile(_ name: String) throws -> URL {
        let url = corpus.appendingPathComponent(name)
        try #require(FileManager.default.fileExists(atPath: url.path),
                     "\(url.path) is missing: scripts/fetch-test-data installs the cot test data (scripts/install-deps runs it)")
        return url
    }

    /// `<stem>.ova` holding the descriptor first, its same-stem `.mf` if the package has one,
    /// then every file its References name that the package ships, in that order.
    static func pack(_ descriptor: String, in dir: Scratch, replacing: [String: URL] = [:],
                     editing edit: (String) -> String = { $0 }) async throws -> URL {
        let source = try corpusFile(descriptor)
        let staging = try dir.subdirectory("staging-\(descriptor)")
        let text = edit(try String(contentsOf: source, encoding: .utf8))
        try text.write(to: staging.appendingPathComponent(descriptor), atomically: true, encoding: .utf8)
        var members = [descriptor]
        let stem = (descriptor as NSString).deletingPathExtension
        if FileManager.default.fileExists(atPath: corpus.appendingPathComponent(stem + ".mf").path) {
            members.append(stem + ".mf")
        }
        members += referencedNames(in: text).filter { name in
            replacing[name] != nil || FileManager.default.fileExists(atPath: corpus.appendingPathComponent(name).path)
        }
        for name in members.dropFirst() {
            try FileManager.default.copyItem(at: replacing[name] ?? corpus.appendingPathComponent(name),
                                             to: staging.appendingPathComponent(name))
        }
        let ova = dir.file(stem + ".ova")
        let ordered = members
        try await TestImageFactory.makeTar(at: ova, from: staging, members: ordered)
        return ova
    }

    /// The `ovf:href` values, in document order (independent of the reader under test).
    static func referencedNames(in text: String) -> [String] {
        var names: [String] = []
        var rest = Substring(text)
        while let start = rest.range(of: "ovf:href=\"") {
            let after = rest[start.upperBound...]
            guard let end = after.firstIndex(of: "\"") else { break }
            let name = String(after[..<end])
            if !names.contains(name) { names.append(name) }
            rest = after[end...]
        }
        return names
    }

    static func read(_ ova: URL, in dir: Scratch) async throws -> SourceReading {
        let kind = try InputProbe.identify(ova)
        #expect(kind == .ova)
        return try await SourceReader.read(source: ova, kind: kind, scratchDirectory: try dir.subdirectory("scratch"))
    }

    /// Converts the disk where the reader found it (pinned, as the product opens it) to qcow2
    /// with qemu-img and checks it holds what `original` holds.
    static func expectConverts(_ locator: DiskLocator, sameAs original: URL, format: String = "vmdk", in dir: Scratch) async throws {
        let output = dir.file("converted-\(UUID().uuidString.prefix(8)).qcow2")
        let pinned = try PinnedImage.open(locator)
        try await TestImageFactory.run("qemu-img", ["convert", "-f", locator.format, "-O", "qcow2", pinned.spec, output.path])
        withExtendedLifetime(pinned) {}
        try await TestImageFactory.run("qemu-img", ["compare", "-f", "qcow2", "-F", format, output.path, original.path])
    }

    static func expectRefused(_ descriptor: String, saying expected: String) async throws {
        let dir = try Scratch()
        let ova = try await pack(descriptor, in: dir)
        let error = await #expect(throws: StageError.self) { _ = try await read(ova, in: dir) }
        #expect(error?.code == .badInput)
        #expect(error?.file?.hasPrefix(ova.path) == true, "\(String(describing: error))")
        #expect(error?.message.contains(expected) == true, "\(descriptor): \(error?.message ?? "accepted")")
    }

    // MARK: - Converts

    @Test("VMware OVF 0.9 (Section/Content with xsi:type, rasd:InstanceId) converts")
    func vmwareOVF09() async throws {
        let dir = try Scratch()
        let reading = try await Self.read(try await Self.pack("v0.9.ovf", in: dir), in: dir)
        let vm = reading.description
        #expect(vm.name == "v0.9")
        #expect(vm.vcpus == 1)
        #expect(vm.memoryMiB == 8192)
        #expect(vm.firmware == .bios)
        #expect(vm.osHint == "other26xLinux64Guest")
        #expect(vm.nics == [NetworkInterface(mac: nil, network: "bridged")])
        #expect(vm.disks.count == 1)
        #expect(vm.disks.first?.virtualSize == 1 << 30)
        #expect(reading.facts.contains("descriptor v0.9.ovf: OVF 0.9 (VMware)"))
        // Annotation and EULA sections are standard and pass without a note.
        #expect(!reading.facts.contains { $0.contains("not understood") }, "\(reading.facts)")
        let disk = try #require(vm.disks.first)
        try await Self.expectConverts(disk.locator, sameAs: try Self.corpusFile("input.vmdk"), in: dir)
    }

    @Test("OVF 0.9 around a disk with content: the guest's bytes come through")
    func vmwareOVF09WithContent() async throws {
        let dir = try Scratch()
        let raw = dir.file("guest.raw")
        let vmdk = dir.file("guest.vmdk")
        try await TestImageFactory.makeRaw(at: raw, sizeMiB: 16, randomMiB: 3)
        try await TestImageFactory.convert(raw, to: .vmdkStreamOptimized, at: vmdk)
        let size = try TestImageFactory.fileSize(vmdk)
        // Only the File's size changes: the descriptor now points at this disk.
        let ova = try await Self.pack("v0.9.ovf", in: dir, replacing: ["input.vmdk": vmdk]) {
            $0.replacingOccurrences(of: "ovf:size=\"152576\"", with: "ovf:size=\"\(size)\"")
        }
        let reading = try await Self.read(ova, in: dir)
        let disk = try #require(reading.description.disks.first)
        #expect(disk.virtualSize == 16 << 20)
        try await Self.expectConverts(disk.locator, sameAs: raw, format: "raw", in: dir)
    }

    @Test("vSphere OVF 1.0 export (vmw:Config firmware=bios, four E1000 NICs) converts")
    func vSphereExport() async throws {
        let dir = try Scratch()
        let reading = try await Self.read(try await Self.pack("vmware.ovf", in: dir), in: dir)
        let vm = reading.description
        #expect(vm.name == "vmw")
        #expect(vm.vcpus == 2)
        #expect(vm.memoryMiB == 1536)
        #expect(vm.firmware == .bios)
        #expect(vm.osHint == "Red Hat Enterprise Linux 6 (64-bit)")
        #expect(vm.nics.count == 4 && vm.nics.allSatisfy { $0.network == "lanethernet0" })
        #expect(reading.facts.contains("descriptor vmware.ovf: OVF 1.x"))
        let disk = try #require(vm.disks.first)
        try await Self.expectConverts(disk.locator, sameAs: try Self.corpusFile("input.vmdk"), in: dir)
    }

    @Test("deployment options: the default configuration's CPUs, memory and NICs; SHA1 manifest; ISO noted")
    func deploymentOptionsAndSHA1Manifest() async throws {
        let dir = try Scratch()
        let reading = try await Self.read(try await Self.pack("input.ovf", in: dir), in: dir)
        let vm = reading.description
        #expect(vm.name == "test")
        // 4CPU-4GB-3NIC is marked ovf:default="true"; the unconditional items say 1 CPU, 1 GiB.
        #expect(vm.vcpus == 4)
        #expect(vm.memoryMiB == 4096)
        #expect(vm.nics.count == 3)
        #expect(vm.disks.count == 1)
        #expect(reading.facts.contains { $0.contains("deployment option '4CPU-4GB-3NIC' read (the default, of 3)") }, "\(reading.facts)")
        #expect(reading.facts.contains { $0.contains("manifest input.mf verified: 4 digests match") }, "\(reading.facts)")
        #expect(reading.facts.contains { $0.contains("not disks of the VM") && $0.contains("'input.iso'") && $0.contains("'sample_cfg.txt'") },
                "\(reading.facts)")
        let disk = try #require(vm.disks.first)
        try await Self.expectConverts(disk.locator, sameAs: try Self.corpusFile("input.vmdk"), in: dir)
    }

    @Test("Cisco CSR1000v appliances (2016 and 2017 descriptors) convert with their default profile",
          arguments: ["csr1000v.ovf", "csr1000v_2017.ovf"])
    func ciscoAppliance(descriptor: String) async throws {
        let dir = try Scratch()
        let reading = try await Self.read(try await Self.pack(descriptor, in: dir), in: dir)
        let vm = reading.description
        #expect(vm.name == "com.cisco.csr1000v" || !vm.name.isEmpty)
        #expect(vm.vcpus == 1)
        #expect(vm.memoryMiB == 4096)
        #expect(vm.firmware == .bios)
        #expect(vm.disks.count == 1)
        #expect(reading.facts.contains { $0.contains("deployment option '1CPU-4GB' read (the default, of 4)") }, "\(reading.facts)")
        let disk = try #require(vm.disks.first)
        try await Self.expectConverts(disk.locator, sameAs: try Self.corpusFile("input.vmdk"), in: dir)
    }

    @Test("VirtualBox OVF 2.0 (StorageItem, EthernetPortItem, vbox:Machine) with its SHA256 manifest converts")
    func virtualBoxOVF20() async throws {
        let dir = try Scratch()
        let reading = try await Self.read(try await Self.pack("ubuntu.2.0.ovf", in: dir), in: dir)
        let vm = reading.description
        #expect(vm.name == "ubuntu")
        #expect(vm.vcpus == 1)
        #expect(vm.memoryMiB == 512)
        #expect(vm.nics.map(\.network) == ["NAT"])
        #expect(vm.disks.first?.virtualSize == 8 << 30)
        #expect(vm.disks.first?.expectedSHA256 == "sha256:4a218c15a1e8aed26cb0a2a533562e85a9f28956a6666181d0c9bb7ba58b5b06")
        #expect(reading.facts.contains("descriptor ubuntu.2.0.ovf: OVF 2.x"))
        #expect(reading.facts.contains { $0.contains("manifest ubuntu.2.0.mf verified: 2 digests match") }, "\(reading.facts)")
        let disk = try #require(vm.disks.first)
        try await Self.expectConverts(disk.locator, sameAs: try Self.corpusFile("ubuntu.2.0-disk1.vmdk"), in: dir)
    }

    // MARK: - Refused on purpose

    @Test("IOSv: a disk with no file (an empty flash disk the importer would create) is refused, naming it")
    func emptyDiskToCreate() async throws {
        try await Self.expectRefused("iosv.ovf", saying: "OVF disk 'flash2' has no ovf:fileRef (empty disks to be created are not supported)")
    }

    @Test("cot's invalid.ovf: a HostResource that is neither a disk nor a file reference is refused, naming it")
    func invalidHostResource() async throws {
        try await Self.expectRefused("invalid.ovf", saying: "OVF disk HostResource 'nonexistent.vmdk' is neither ovf:/disk/… nor ovf:/file/…")
    }

    @Test("a VM without disks is refused")
    func minimalWithoutDisks() async throws {
        try await Self.expectRefused("minimal.ovf", saying: "describes no disks")
    }

    @Test("an envelope in a namespace of a later OVF (envelope/3) is refused, naming the namespace")
    func unknownEnvelopeNamespace() async throws {
        try await Self.expectRefused("ersatz_ovf_3.0.ovf", saying: "namespace 'http://schemas.dmtf.org/ovf/envelope/3' is not one we read")
    }
}
