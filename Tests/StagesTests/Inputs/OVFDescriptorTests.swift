import Foundation
import Testing
@testable import Stages

@Suite("OVFDescriptor")
struct OVFDescriptorTests {
    @Test("VMware OVF 1.0: name, CPUs, memory, EFI, disks by address, NIC")
    func vmware() throws {
        let xml = OVFFixtures.vmware(disks: [.init(href: "web01-disk1.vmdk", size: 1000), .init(href: "web01-disk2.vmdk", capacityMiB: 64)])
        let ovf = try OVFDescriptor.parse(Data(xml.utf8), file: "web01.ovf")
        #expect(ovf.name == "web01")
        #expect(ovf.vcpus == 2)
        #expect(ovf.memoryMiB == 2048)
        #expect(ovf.firmware == .uefi)
        #expect(ovf.disks.map(\.href) == ["web01-disk1.vmdk", "web01-disk2.vmdk"])
        #expect(ovf.disks.map(\.diskID) == ["vmdisk1", "vmdisk2"])
        #expect(ovf.disks[0].fileSize == 1000)
        #expect(ovf.disks[1].capacityBytes == 64 << 20)
        #expect(ovf.nics == [NetworkInterface(mac: "00:50:56:ab:cd:ef", network: "VM Network")])
        #expect(ovf.osHint == "Debian GNU/Linux 11 (64-bit)")
        let bios = try OVFDescriptor.parse(Data(OVFFixtures.vmware(disks: [.init(href: "a.vmdk")], firmware: "bios").utf8), file: "b.ovf")
        #expect(bios.firmware == .bios)
    }

    @Test("VirtualBox OVF 2.0: sasd/epasd items, MAC from vbox:Machine, EFI")
    func virtualBox() throws {
        let ovf = try OVFDescriptor.parse(Data(OVFFixtures.virtualBox(disk: .init(href: "vbox-disk001.vmdk")).utf8), file: "vbox.ovf")
        #expect(ovf.name == "vbox-debian")
        #expect(ovf.vcpus == 4)
        #expect(ovf.memoryMiB == 1024)
        #expect(ovf.firmware == .uefi)
        #expect(ovf.disks.map(\.href) == ["vbox-disk001.vmdk"])
        #expect(ovf.disks[0].capacityBytes == 32 << 20)
        #expect(ovf.nics == [NetworkInterface(mac: "08:00:27:a1:b2:c3", network: "NAT")])
    }

    @Test("external entities (XXE) and entity expansion are refused before parsing")
    func entities() throws {
        for (label, xml) in [("xxe", OVFFixtures.externalEntity), ("expansion", OVFFixtures.entityExpansion)] {
            let error = #expect(throws: StageError.self, "\(label)") { try OVFDescriptor.parse(Data(xml.utf8), file: "evil.ovf") }
            #expect(error?.code == .badInput)
            #expect(error?.file == "evil.ovf")
            #expect(error?.message.contains("DOCTYPE") == true)
        }
    }

    @Test("hrefs that are paths, malformed XML and foreign roots are refused")
    func malformed() throws {
        for href in ["../etc/passwd", "/etc/shadow", "http://host/disk.vmdk", "sub/disk.vmdk"] {
            let xml = OVFFixtures.vmware(disks: [.init(href: href)])
            let error = #expect(throws: StageError.self) { try OVFDescriptor.parse(Data(xml.utf8), file: "vm.ovf") }
            #expect(error?.message.contains("not a plain file name") == true, "\(href)")
        }
        #expect(throws: StageError.self) { try OVFDescriptor.parse(Data("<Envelope><Unclosed></Envelope>".utf8), file: "x.ovf") }
        let foreign = #expect(throws: StageError.self) { try OVFDescriptor.parse(Data("<domain/>".utf8), file: "x.ovf") }
        #expect(foreign?.message.contains("<domain>") == true)
    }

    @Test("memory units", arguments: [("byte * 2^20", UInt64(1) << 20), ("byte*2^30", 1 << 30), ("MegaBytes", 1 << 20), ("GigaBytes", 1 << 30), ("byte", 1)])
    func units(text: String, bytes: UInt64) {
        #expect(OVFDescriptor.bytesPerUnit(text) == bytes)
    }
}
