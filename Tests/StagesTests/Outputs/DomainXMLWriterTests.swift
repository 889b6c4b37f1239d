import Foundation
import Testing
import TestSupport
@testable import Stages

@Suite("DomainXMLWriter", .serialized)
struct DomainXMLWriterTests {
    private func vm(name: String = "web01", firmware: Firmware = .bios, disks: Int = 1,
                    macs: [String?] = ["00:50:56:AB:CD:EF"]) -> VMDescription {
        VMDescription(
            name: name, vcpus: 2, memoryMiB: 3072, firmware: firmware,
            disks: (0..<disks).map { SourceDisk(id: "disk\($0)", locator: DiskLocator(path: "/src/d\($0).vmdk", format: "vmdk")) },
            nics: macs.map { NetworkInterface(mac: $0, network: "VM Network") },
            origin: "ovf")
    }

    private func outputDisks(_ count: Int) -> [DomainXMLWriter.Disk] {
        (0..<count).map { DomainXMLWriter.Disk(path: "/out/web01/web01\($0 == 0 ? "" : "-disk\($0)").qcow2", format: "qcow2") }
    }

    private func expectAcceptedByLibvirt(_ xml: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        try await OutputTestImages.expectAcceptedByLibvirt(xml, sourceLocation: sourceLocation)
    }

    @Test("validates and defines", arguments: [Firmware.bios, .uefi], [1, 3])
    func validates(firmware: Firmware, diskCount: Int) async throws {
        let macs: [String?] = diskCount == 1 ? ["00:50:56:ab:cd:ef"] : ["00:50:56:ab:cd:ef", nil, "52-54-00-12-34-56"]
        let xml = try DomainXMLWriter().render(vm: vm(firmware: firmware, disks: diskCount, macs: macs),
                                               disks: outputDisks(diskCount), options: ConversionOptions())
        try await expectAcceptedByLibvirt(xml)
        #expect(xml.contains("<type arch='x86_64' machine='q35'>hvm</type>"))
        #expect(xml.contains("<memory unit='MiB'>3072</memory>"))
        #expect(xml.contains("<vcpu placement='static'>2</vcpu>"))
        #expect(xml.contains("<mac address='00:50:56:ab:cd:ef'/>"))
        #expect(xml.components(separatedBy: "<interface type='network'>").count - 1 == macs.count)
        #expect(xml.components(separatedBy: "<source network='default'/>").count - 1 == macs.count)
        #expect(xml.contains("OVMF_CODE_4M.fd") == (firmware == .uefi))
        for index in 0..<diskCount {
            #expect(xml.contains("<target dev='\(DomainXMLWriter.virtioDiskName(index))' bus='virtio'/>"))
        }
        #expect(xml.components(separatedBy: "<boot order='1'/>").count == 2)
        if diskCount == 3 { #expect(xml.contains("<mac address='52:54:00:12:34:56'/>")) }
    }

    @Test("boot order follows the order of the disks given")
    func bootDiskIsFirst() throws {
        let xml = try DomainXMLWriter().render(vm: vm(disks: 2), disks: outputDisks(2), options: ConversionOptions())
        let vda = try #require(xml.range(of: "<target dev='vda' bus='virtio'/>"))
        let boot = try #require(xml.range(of: "<boot order='1'/>"))
        let vdb = try #require(xml.range(of: "<target dev='vdb' bus='virtio'/>"))
        #expect(vda.upperBound < boot.lowerBound && boot.upperBound < vdb.lowerBound)
        #expect(xml.contains("/out/web01/web01.qcow2"))
    }

    @Test("configuration overrides the source")
    func overrides() async throws {
        var options = ConversionOptions()
        options.vmMemoryMiB = 8192
        options.vmVcpus = 6
        options.vmUEFI = true
        options.vmName = "renamed"
        options.libvirtNetwork = "br-migrated"
        let xml = try DomainXMLWriter().render(vm: vm(), disks: outputDisks(1), options: options)
        #expect(xml.contains("<name>renamed</name>"))
        #expect(xml.contains("<memory unit='MiB'>8192</memory>"))
        #expect(xml.contains("<currentMemory unit='MiB'>8192</currentMemory>"))
        #expect(xml.contains("<vcpu placement='static'>6</vcpu>"))
        #expect(xml.contains("<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>"))
        #expect(xml.contains("<nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'/>"))
        #expect(xml.contains("<source network='br-migrated'/>"))
        try await expectAcceptedByLibvirt(xml)

        options.vmUEFI = false
        let bios = try DomainXMLWriter().render(vm: vm(firmware: .uefi), disks: outputDisks(1), options: options)
        #expect(!bios.contains("<loader"))
    }

    @Test("the OVMF files the XML names are installed")
    func ovmfFilesExist() {
        let writer = DomainXMLWriter()
        #expect(FileManager.default.fileExists(atPath: writer.uefiLoader))
        #expect(FileManager.default.fileExists(atPath: writer.uefiVarsTemplate))
    }

    @Test("a hostile VM name is escaped and survives a round trip through libvirt")
    func hostileName() async throws {
        let hostile = "evil<&'\">name"
        let xml = try DomainXMLWriter().render(vm: vm(name: hostile), disks: outputDisks(1), options: ConversionOptions())
        #expect(xml.contains("<name>evil&lt;&amp;&apos;&quot;&gt;name</name>"))
        #expect(!xml.contains(hostile))
        try await expectAcceptedByLibvirt(xml)

        let directory = try Scratch()
        let file = directory.file("domain.xml")
        try Data(xml.utf8).write(to: file)
        // The test driver echoes back the name it parsed.
        let (status, output) = try await OutputTestImages.status("virsh", ["-c", "test:///default", "define", file.path])
        #expect(status == 0)
        #expect(output.contains(hostile), "\(output)")
    }

    @Test("hostile paths and control characters do not break the document")
    func hostilePathAndControlCharacters() async throws {
        let disks = [DomainXMLWriter.Disk(path: "/out/a'b\"c<d>&e.qcow2", format: "qcow2")]
        let xml = try DomainXMLWriter().render(vm: vm(name: "tab\there\u{1}bell"), disks: disks, options: ConversionOptions())
        #expect(xml.contains("file='/out/a&apos;b&quot;c&lt;d&gt;&amp;e.qcow2'"))
        #expect(!xml.contains("\u{1}"))
        let directory = try Scratch()
        let file = directory.file("domain.xml")
        try Data(xml.utf8).write(to: file)
        let (validateStatus, validateOutput) = try await OutputTestImages.status("virt-xml-validate", [file.path, "domain"])
        #expect(validateStatus == 0, "\(validateOutput)")
    }

    @Test("malformed and multicast MACs are dropped, libvirt generates one")
    func badMACs() async throws {
        #expect(DomainXMLWriter.unicastMAC("00:50:56:AB:CD:EF") == "00:50:56:ab:cd:ef")
        #expect(DomainXMLWriter.unicastMAC("00-50-56-ab-cd-ef") == "00:50:56:ab:cd:ef")
        #expect(DomainXMLWriter.unicastMAC("01:00:5e:00:00:01") == nil)
        #expect(DomainXMLWriter.unicastMAC("00:50:56:ab:cd") == nil)
        #expect(DomainXMLWriter.unicastMAC("00:50:56:ab:cd:zz") == nil)
        #expect(DomainXMLWriter.unicastMAC("'/><x y='") == nil)
        let xml = try DomainXMLWriter().render(vm: vm(macs: ["01:00:5e:00:00:01"]), disks: outputDisks(1),
                                               options: ConversionOptions())
        #expect(!xml.contains("<mac "))
        try await expectAcceptedByLibvirt(xml)
    }

    @Test("a bare disk gets one NIC; an OVF without NICs gets none")
    func defaultNIC() throws {
        var bare = vm(macs: [])
        bare.origin = "disk"
        let bareXML = try DomainXMLWriter().render(vm: bare, disks: outputDisks(1), options: ConversionOptions())
        #expect(bareXML.components(separatedBy: "<interface ").count == 2)
        let ovfXML = try DomainXMLWriter().render(vm: vm(macs: []), disks: outputDisks(1), options: ConversionOptions())
        #expect(!ovfXML.contains("<interface "))
    }

    @Test("output is deterministic")
    func deterministic() throws {
        let writer = DomainXMLWriter()
        let first = try writer.render(vm: vm(disks: 3), disks: outputDisks(3), options: ConversionOptions())
        let second = try writer.render(vm: vm(disks: 3), disks: outputDisks(3), options: ConversionOptions())
        #expect(first == second)
    }

    @Test("no disk or no name is an error")
    func refusals() {
        #expect(throws: StageError.self) {
            try DomainXMLWriter().render(vm: vm(), disks: [], options: ConversionOptions())
        }
        #expect(throws: StageError.self) {
            try DomainXMLWriter().render(vm: vm(name: ""), disks: outputDisks(1), options: ConversionOptions())
        }
    }

    @Test("disk names follow virtio-blk naming")
    func diskNames() {
        #expect(DomainXMLWriter.virtioDiskName(0) == "vda")
        #expect(DomainXMLWriter.virtioDiskName(25) == "vdz")
        #expect(DomainXMLWriter.virtioDiskName(26) == "vdaa")
        #expect(DomainXMLWriter.virtioDiskName(27) == "vdab")
    }
}
