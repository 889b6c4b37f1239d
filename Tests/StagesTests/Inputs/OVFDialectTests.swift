import Foundation
import Testing
import TestSupport
@testable import Stages

/// The OVF dialects and vSphere extensions, on descriptors shaped like the exports that carry
/// them (the real-world ones are in `OVFRealWorldCorpusTests`).
@Suite("OVF dialects and extensions")
struct OVFDialectTests {
    static let disks = [OVFFixtures.DiskFile(href: "web01-disk1.vmdk", size: 1000), OVFFixtures.DiskFile(href: "web01-disk2.vmdk", size: 2000)]

    /// The ovftool-style fixture with `edits` applied (text → replacement).
    static func vsphere(firmware: String = "bios", _ edits: [(String, String)]) -> String {
        var text = OVFFixtures.vmware(disks: disks, firmware: firmware)
        for (anchor, replacement) in edits {
            #expect(text.contains(anchor), "fixture has no \(anchor)")
            text = text.replacingOccurrences(of: anchor, with: replacement)
        }
        return text
    }

    static func parse(_ text: String) throws -> OVFDescriptor {
        try OVFDescriptor.parse(Data(text.utf8), file: "/queue/vm.ovf")
    }

    static func refusal(_ text: String) -> StageError? {
        #expect(throws: StageError.self) { try parse(text) }
    }

    static let firmwareConfig = "<vmw:Config ovf:required=\"false\" vmw:key=\"firmware\" vmw:value=\"bios\"/>"
    static let hardwareEnd = "</VirtualHardwareSection>"
    static let systemEnd = "  </VirtualSystem>"

    // MARK: - Dialects

    /// OVF 0.9 as ESX 3.5 wrote it: sections as <Section xsi:type>, the VM as <Content xsi:type>.
    static let ovf09 = """
        <?xml version="1.0" encoding="UTF-8"?>
        <ovf:Envelope xmlns:ovf="http://www.vmware.com/schema/ovf/1/envelope" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ovf:version="0.9">
          <ovf:References><ovf:File ovf:href="legacy-disk1.vmdk" ovf:id="file1" ovf:size="4096"/></ovf:References>
          <ovf:Section xsi:type="ovf:DiskSection_Type">
            <ovf:Info>Disks</ovf:Info>
            <ovf:Disk ovf:capacity="8589934592" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/specifications/vmdk.html#sparse"/>
          </ovf:Section>
          <ovf:Section xsi:type="ovf:NetworkSection_Type"><ovf:Info>Networks</ovf:Info><ovf:Network ovf:name="VM Network"/></ovf:Section>
          <ovf:Content ovf:id="legacy" xsi:type="ovf:VirtualSystem_Type">
            <ovf:Info>A virtual machine</ovf:Info>
            <ovf:Section xsi:type="ovf:VirtualHardwareSection_Type">
              <ovf:Info>Hardware</ovf:Info>
              <ovf:Item><rasd:InstanceId>1</rasd:InstanceId><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></ovf:Item>
              <ovf:Item><rasd:InstanceId>2</rasd:InstanceId><rasd:ResourceType>4</rasd:ResourceType><rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits><rasd:VirtualQuantity>768</rasd:VirtualQuantity></ovf:Item>
              <ovf:Item><rasd:InstanceId>3</rasd:InstanceId><rasd:ResourceType>6</rasd:ResourceType></ovf:Item>
              <ovf:Item><rasd:InstanceId>4</rasd:InstanceId><rasd:ResourceType>17</rasd:ResourceType><rasd:HostResource>/disk/vmdisk1</rasd:HostResource><rasd:Parent>3</rasd:Parent><rasd:AddressOnParent>0</rasd:AddressOnParent></ovf:Item>
              <ovf:Item><rasd:InstanceId>5</rasd:InstanceId><rasd:ResourceType>10</rasd:ResourceType><rasd:Connection>VM Network</rasd:Connection><rasd:Address>00:50:56:01:02:03</rasd:Address></ovf:Item>
            </ovf:Section>
            <ovf:Section ovf:required="false" xsi:type="ovf:AnnotationSection_Type"><ovf:Info>Note</ovf:Info><ovf:Annotation>legacy</ovf:Annotation></ovf:Section>
          </ovf:Content>
        </ovf:Envelope>
        """

    @Test("OVF 0.9: Section and Content are read by their xsi:type, InstanceId links disk to controller")
    func ovf09() throws {
        let ovf = try Self.parse(Self.ovf09)
        #expect(ovf.dialect == .vmware09)
        #expect(ovf.name == "legacy")
        #expect(ovf.vcpus == 2)
        #expect(ovf.memoryMiB == 768)
        #expect(ovf.disks.map(\.href) == ["legacy-disk1.vmdk"])
        #expect(ovf.disks.first?.capacityBytes == 8 << 30)
        #expect(ovf.disks.first?.itemInstanceID == "4")
        #expect(ovf.nics == [NetworkInterface(mac: "00:50:56:01:02:03", network: "VM Network")])
        #expect(ovf.notes.isEmpty, "\(ovf.notes)")
    }

    @Test("the envelope namespace decides the dialect; none is read as 1.x with a note; another is refused")
    func namespaces() throws {
        #expect(try Self.parse(Self.vsphere([])).dialect == .dmtf1)
        let v2 = Self.vsphere([("http://schemas.dmtf.org/ovf/envelope/1", "http://schemas.dmtf.org/ovf/envelope/2")])
        #expect(try Self.parse(v2).dialect == .dmtf2)
        let bare = Self.vsphere([(" xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\"", ""),
                                 (" xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\"", "")])
        let unnamespaced = try Self.parse(bare)
        #expect(unnamespaced.dialect == .dmtf1)
        #expect(unnamespaced.notes.contains("the OVF envelope declares no namespace: read as OVF 1.x"))
        let foreign = Self.vsphere([("http://schemas.dmtf.org/ovf/envelope/1\" xmlns:cim", "urn:example:not-ovf\" xmlns:cim")])
        let error = Self.refusal(foreign)
        #expect(error?.message.contains("namespace 'urn:example:not-ovf' is not one we read") == true, "\(String(describing: error))")
    }

    // MARK: - vSphere extensions

    @Test("vSphere 7 UEFI export: ExtraConfig firmware=efi, secure boot noted, NVRAM recorded, BootOrderSection picks the boot disk")
    func vSphereUEFI() throws {
        let text = Self.vsphere([
            (Self.firmwareConfig, """
                <vmw:Config ovf:required="false" vmw:key="bootOptions.efiSecureBootEnabled" vmw:value="true"/>
                      <vmw:ExtraConfig ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
                      <vmw:ExtraConfig ovf:required="false" vmw:key="nvram" vmw:value="ovf:/file/file3"/>
                """),
            ("  </References>", "    <File ovf:href=\"web01-file1.nvram\" ovf:id=\"file3\" ovf:size=\"8684\"/>\n  </References>"),
            (Self.systemEnd, """
                    <vmw:BootOrderSection vmw:instanceId="9" vmw:type="disk"><Info>Virtual hardware device boot order</Info></vmw:BootOrderSection>
                    <vmw:BootOrderSection vmw:type="net"><Info>Virtual hardware device boot order</Info></vmw:BootOrderSection>
                \(Self.systemEnd)
                """),
        ])
        let ovf = try Self.parse(text)
        #expect(ovf.firmware == .uefi)
        #expect(ovf.notes.contains { $0.contains("UEFI Secure Boot on") })
        #expect(ovf.notes.contains { $0.contains("NVRAM file 'web01-file1.nvram'") && $0.contains("not carried over") })
        #expect(!ovf.notes.contains { $0.contains("not disks of the VM") }, "the NVRAM file is not reported twice: \(ovf.notes)")
        #expect(ovf.referencedFiles.contains("web01-file1.nvram"))
        // Item 9 is "Hard disk 2" (address 1): the second disk in controller order boots.
        #expect(ovf.disks.map(\.itemInstanceID) == ["8", "9"])
        #expect(ovf.bootDiskIndex == 1)
        #expect(ovf.bootOrderHint(ofDiskAt: 1) == 0 && ovf.bootOrderHint(ofDiskAt: 0) == 1)
        #expect(ovf.notes.contains { $0.contains("boot disk from vmw:BootOrderSection: disk 2") })
    }

    @Test("secure boot from the .vmx key alone means UEFI; a network-first boot order is noted")
    func secureBootAndNetworkFirst() throws {
        let text = Self.vsphere([
            (Self.firmwareConfig, "<vmw:ExtraConfig ovf:required=\"false\" vmw:key=\"uefi.secureBoot.enabled\" vmw:value=\"TRUE\"/>"),
            (Self.systemEnd, "    <vmw:BootOrderSection vmw:type=\"net\"><Info>Boot</Info></vmw:BootOrderSection>\n\(Self.systemEnd)"),
        ])
        let ovf = try Self.parse(text)
        #expect(ovf.firmware == .uefi)
        #expect(ovf.bootDiskIndex == 0)
        #expect(ovf.notes.contains { $0.contains("boots from net first") })
    }

    @Test("a BootOrderSection naming no disk of ours is noted and ignored")
    func bootOrderNamingNothing() throws {
        let text = Self.vsphere([(Self.systemEnd, "    <vmw:BootOrderSection vmw:instanceId=\"77\" vmw:type=\"disk\"><Info>B</Info></vmw:BootOrderSection>\n\(Self.systemEnd)")])
        let ovf = try Self.parse(text)
        #expect(ovf.bootDiskIndex == 0)
        #expect(ovf.notes.contains { $0.contains("names disk item 77") })
    }

    // MARK: - Sections

    @Test("an unknown section is ignored with a note; marked ovf:required=\"true\" it is refused, naming it")
    func unknownSections() throws {
        let optional = Self.vsphere([(Self.systemEnd, "    <acme:TuningSection xmlns:acme=\"urn:acme\"><Info>x</Info></acme:TuningSection>\n\(Self.systemEnd)")])
        let ovf = try Self.parse(optional)
        #expect(ovf.notes.contains { $0.contains("not understood and ignored") && $0.contains("acme:TuningSection") }, "\(ovf.notes)")

        let required = Self.vsphere([(Self.systemEnd, "    <acme:TuningSection xmlns:acme=\"urn:acme\" ovf:required=\"true\"><Info>x</Info></acme:TuningSection>\n\(Self.systemEnd)")])
        let error = Self.refusal(required)
        #expect(error?.file == "/queue/vm.ovf")
        #expect(error?.message.contains("OVF section acme:TuningSection in VirtualSystem is marked ovf:required=\"true\"") == true,
                "\(String(describing: error))")

        // At envelope level too, and a hostile name is cut short in the message.
        let long = String(repeating: "X", count: 5000)
        let envelopeLevel = Self.vsphere([("  <NetworkSection>", "  <\(long) ovf:required=\"true\"/>\n  <NetworkSection>")])
        let longError = Self.refusal(envelopeLevel)
        #expect(longError?.message.contains("is marked ovf:required") == true)
        #expect((longError?.message.count ?? .max) < 400)
    }

    @Test("standard sections that do not bear on conversion pass without a note; EncryptionSection is refused")
    func standardSections() throws {
        let text = Self.vsphere([(Self.systemEnd, """
                <ProductSection ovf:required="true"><Info>p</Info><Product>App</Product></ProductSection>
                <EulaSection><Info>e</Info><License>text</License></EulaSection>
            \(Self.systemEnd)
            """)])
        #expect(try Self.parse(text).notes.isEmpty)
        let encrypted = Self.vsphere([("  <NetworkSection>", "  <EncryptionSection><Info>keys</Info></EncryptionSection>\n  <NetworkSection>")])
        #expect(Self.refusal(encrypted)?.message.contains("EncryptionSection") == true)
    }

    @Test("tens of thousands of items repeating one InstanceID, and as many disk entries, are interpreted without a quadratic search")
    func repeatedInstanceIDs() throws {
        let count = 20_000
        let items = String(repeating: "<Item ovf:configuration=\"big\"><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>8</rasd:VirtualQuantity></Item>", count: count)
        let entries = (0..<count).map { "<Disk ovf:diskId=\"d\($0)\" ovf:fileRef=\"file1\"/>" }.joined()
        let text = Self.vsphere([
            ("  <NetworkSection>", "  <DeploymentOptionSection><Info>o</Info><Configuration ovf:id=\"big\"><Label>b</Label></Configuration></DeploymentOptionSection>\n  <NetworkSection>"),
            ("  </DiskSection>", entries + "\n  </DiskSection>"),
            (Self.firmwareConfig, items),
        ])
        // The interpreter alone: decoding and XMLParser cost what they cost before (and are bounded by the element limit).
        let root = try OVFXMLTree.parse(Data(text.utf8), file: "vm.ovf")
        var ovf: OVFDescriptor?
        let elapsed = try ContinuousClock().measure { ovf = try OVFInterpreter(root: root, file: "vm.ovf").descriptor() }
        #expect(ovf?.disks.count == 2)
        #expect(ovf?.vcpus == 8, "the profile's item replaces the unconditional one")
        // Linear takes about a second in a debug build on a loaded 2-core machine; a search per item grows with the square.
        #expect(elapsed < .seconds(20), "took \(elapsed)")
    }

    // MARK: - VirtualSystemCollection

    @Test("a VirtualSystemCollection of one VM converts it; of two it is refused, naming both")
    func collections() throws {
        let single = Self.vsphere([
            ("  <VirtualSystem ovf:id=\"web01\">", "  <VirtualSystemCollection ovf:id=\"app\">\n    <Info>vApp</Info>\n  <VirtualSystem ovf:id=\"web01\">"),
            ("</VirtualSystem>", "</VirtualSystem>\n  </VirtualSystemCollection>"),
        ])
        let ovf = try Self.parse(single)
        #expect(ovf.name == "web01")
        #expect(ovf.notes.contains { $0.contains("VirtualSystemCollection 'app' holds one VM") })

        let second = "<VirtualSystem ovf:id=\"db01\"><Info>VM</Info><Name>db01</Name></VirtualSystem>"
        let pair = Self.vsphere([
            ("  <VirtualSystem ovf:id=\"web01\">", "  <VirtualSystemCollection ovf:id=\"app\">\n    <Info>vApp</Info>\n  <VirtualSystem ovf:id=\"web01\">"),
            ("</VirtualSystem>", "</VirtualSystem>\n\(second)\n  </VirtualSystemCollection>"),
        ])
        let error = Self.refusal(pair)
        #expect(error?.message.contains("VirtualSystemCollection (vApp) holds 2 virtual machines (web01, db01); a job converts one VM") == true,
                "\(String(describing: error))")
    }

    // MARK: - Packages: manifest digests, certificates, chunks

    @Test("manifests in SHA1, SHA256 and SHA512 are parsed", arguments: [("SHA1", 40), ("SHA256", 64), ("SHA512", 128)])
    func manifestAlgorithms(algorithm: String, hexLength: Int) throws {
        let digest = String(repeating: "a", count: hexLength)
        let manifest = try OVFManifest.parse("\(algorithm)(vm.ovf)= \(digest)\r\n", file: "vm.mf")
        #expect(manifest.entries.map(\.algorithm.rawValue) == [algorithm.lowercased()])
        #expect(manifest.entries.first?.digest == digest)
    }

    @Test("an OVA's SHA512 manifest is verified, its .cert recorded, a member the OVF does not name noted")
    func certificateAndExtraMember() async throws {
        let dir = try Scratch()
        let staging = try dir.subdirectory("staging")
        let raw = dir.file("disk.raw")
        let vmdk = staging.appendingPathComponent("web01-disk1.vmdk")
        try await TestImageFactory.makeRaw(at: raw, sizeMiB: 8, randomMiB: 1)
        try await TestImageFactory.convert(raw, to: .vmdkStreamOptimized, at: vmdk)
        let ovfText = OVFFixtures.vmware(disks: [.init(href: "web01-disk1.vmdk", size: try TestImageFactory.fileSize(vmdk), capacityMiB: 8)])
        try ovfText.write(to: staging.appendingPathComponent("web01.ovf"), atomically: true, encoding: .utf8)
        try "release notes\n".write(to: staging.appendingPathComponent("README.txt"), atomically: true, encoding: .utf8)
        let ova = dir.file("web01.ova")
        var manifest = ""
        for name in ["web01.ovf", "web01-disk1.vmdk"] {
            manifest += "SHA512(\(name))= \(try await TestImageFactory.referenceDigest("sha512sum", of: staging.appendingPathComponent(name)))\n"
        }
        try manifest.write(to: staging.appendingPathComponent("web01.mf"), atomically: true, encoding: .utf8)
        try "SHA256(web01.mf)= 0123abcd\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
            .write(to: staging.appendingPathComponent("web01.cert"), atomically: true, encoding: .utf8)
        try await TestImageFactory.makeTar(at: ova, from: staging, members: ["web01.ovf", "web01.mf", "web01.cert", "web01-disk1.vmdk", "README.txt"])
        let reading = try OVAReader.read(ova)
        #expect(reading.facts.contains("manifest web01.mf verified: 2 digests match"), "\(reading.facts)")
        #expect(reading.facts.contains { $0.hasPrefix("signing certificate web01.cert (") && $0.contains("signature not checked") })
        #expect(reading.facts.contains("OVA members the OVF does not reference, ignored: 'README.txt'"), "\(reading.facts)")
        #expect(reading.description.disks.count == 1)
    }

    @Test("a disk split by ovftool --chunkSize is refused, saying so")
    func chunkedDisk() async throws {
        let dir = try Scratch()
        let text = Self.vsphere([("ovf:href=\"web01-disk1.vmdk\" ovf:id=\"file1\"", "ovf:href=\"web01-disk1.vmdk\" ovf:id=\"file1\" ovf:chunkSize=\"2147483648\"")])
        let ovfURL = dir.file("web01.ovf")
        try text.write(to: ovfURL, atomically: true, encoding: .utf8)
        let error = #expect(throws: StageError.self) { try OVFDirectoryReader.read(ovfURL) }
        #expect(error?.message.contains("split into chunks of 2147483648 bytes (ovf:chunkSize)") == true, "\(String(describing: error))")
    }

    @Test("a BootOrderSection's disk boots first through the directory reader")
    func bootOrderThroughReader() async throws {
        let dir = try Scratch()
        var disks: [OVFFixtures.DiskFile] = []
        for index in 1...2 {
            let raw = dir.file("r\(index).raw")
            let vmdk = dir.file("web01-disk\(index).vmdk")
            try await TestImageFactory.makeRaw(at: raw, sizeMiB: 4, randomMiB: 1)
            try await TestImageFactory.convert(raw, to: .vmdkStreamOptimized, at: vmdk)
            disks.append(.init(href: vmdk.lastPathComponent, size: try TestImageFactory.fileSize(vmdk), capacityMiB: 4))
        }
        let text = OVFFixtures.vmware(disks: disks).replacingOccurrences(
            of: Self.systemEnd,
            with: "    <vmw:BootOrderSection vmw:instanceId=\"9\" vmw:type=\"disk\"><Info>B</Info></vmw:BootOrderSection>\n\(Self.systemEnd)")
        let ovfURL = dir.file("web01.ovf")
        try text.write(to: ovfURL, atomically: true, encoding: .utf8)
        let vm = try OVFDirectoryReader.read(ovfURL).description
        #expect(vm.disks.map(\.bootOrderHint) == [1, 0])
        #expect(vm.bootDiskIndex == 1)
        #expect(vm.disksInBootOrder.first?.locator.path.hasSuffix("web01-disk2.vmdk") == true)
    }
}
