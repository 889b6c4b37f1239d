import Foundation
import Testing
import TestSupport

/// The real Debian 12 of RealGuestConversionTests, exported as ESX 3.x / Workstation 6 did it:
/// an OVA whose descriptor is VMware OVF 0.9 (sections as `<Section xsi:type>`, the VM as
/// `<Content xsi:type>`, `rasd:InstanceId`), with a SHA1 manifest and a streamOptimized disk.
/// The one-shot `hyper2kvm convert` (guest fixes on) turns it into a guest that boots on
/// virtio disk and NIC, keeps the VMware MAC and stays on BIOS firmware.
@Suite(.serialized, .guestWorkSlot, .inGuestRotation("ovf09"), .tags(.guest, .boot), .requiresLibguestfs, .requiresBootTools) struct RealGuestOVF09Tests {
    static let repositoryRoot = RealGuestTesting.repositoryRoot
    static var cachedGuest: String {
        (ProcessInfo.processInfo.environment["HYPER2KVM_TEST_CACHE"] ?? "/var/cache/hyper2kvm-test") + "/debian12-vmware.vmdk"
    }
    static let mac = "00:50:56:aa:bb:cc"

    @Test func anOVF09ExportOfADebianGuestConvertsAndBootsOnVirtioKeepingMACAndBIOS() async throws {
        if !FileManager.default.fileExists(atPath: Self.cachedGuest) {
            try await sh([Self.repositoryRoot.appendingPathComponent("scripts/build-test-guest").path, "debian12"])
        }
        let scratch = try Scratch("real-guest-ovf09")
        let work = scratch.path("ova")
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let disk = "legacy-disk1.vmdk"
        try await sh(["qemu-img", "convert", "-f", "vmdk", "-O", "vmdk", "-o", "subformat=streamOptimized", Self.cachedGuest, work + "/" + disk])
        let info = try JSONSerialization.jsonObject(with: Data(try await sh(["qemu-img", "info", "--output=json", Self.cachedGuest]).out.utf8))
        let capacity = try #require((info as? [String: Any])?["virtual-size"] as? NSNumber).stringValue
        let size = try FileManager.default.attributesOfItem(atPath: work + "/" + disk)[.size] as? NSNumber ?? 0
        try Self.descriptor(disk: disk, size: size.int64Value, capacity: capacity)
            .write(toFile: work + "/legacy.ovf", atomically: true, encoding: .utf8)
        var manifest = ""
        for name in ["legacy.ovf", disk] {
            manifest += "SHA1(\(name))= \(try await sh(["sha1sum", work + "/" + name]).out.prefix { $0 != " " })\n"
        }
        try manifest.write(toFile: work + "/legacy.mf", atomically: true, encoding: .utf8)
        let ova = scratch.path("legacy.ova")
        try await sh(["tar", "-C", work, "--format=ustar", "-cf", ova, "legacy.ovf", "legacy.mf", disk])
        try FileManager.default.removeItem(atPath: work)

        let out = scratch.path("out")
        let state = scratch.path("state")
        let run = try await sh([ProductBinary.path, "convert", ova, "--output-dir", out, "--state-dir", state],
                         environment: RealGuestTesting.libguestfsEnvironment, allowFailure: true)
        #expect(run.status == 0, "convert failed: \(run.err)")
        let directory = out + "/legacy"
        let qcow2 = directory + "/legacy.qcow2"
        #expect(FileManager.default.fileExists(atPath: qcow2), "\(run.out)\(run.err)")
        guard FileManager.default.fileExists(atPath: qcow2) else { return }

        let xml = try String(contentsOfFile: directory + "/domain.xml", encoding: .utf8)
        #expect(xml.contains(Self.mac), "the OVF 0.9 MAC must reach domain.xml")
        #expect(!xml.contains("OVMF"), "the OVF 0.9 guest is BIOS: no UEFI loader")
        #expect(xml.contains("<memory unit='MiB'>1024</memory>"), "the OVF 0.9 memory (MegaBytes) must reach domain.xml")
        let history = try await sh([ProductBinary.path, "history", "1", "--state-dir", state], allowFailure: true)
        #expect(history.out.contains("descriptor legacy.ovf: OVF 0.9 (VMware)"), "the dialect is journaled: \(history.out) \(history.err)")
        #expect(history.out.contains("manifest legacy.mf verified: 2 digests match"), "\(history.out)")

        let boot = try await sh([Self.repositoryRoot.appendingPathComponent("scripts/boot-test").path, qcow2],
                          environment: ["BOOT_TEST_TIMEOUT": "600"], allowFailure: true)
        #expect(boot.status == 0, "the converted guest did not boot on virtio: \(boot.out) \(boot.err)")
        #expect(boot.out.contains("HYPER2KVM-NET ens192="), "the NIC did not come up under its old name: \(boot.out)")
    }

    /// An OVF 0.9 descriptor in ESX 3.5's shape (vmx-04 hardware, LSI Logic SCSI, one NIC).
    static func descriptor(disk: String, size: Int64, capacity: String) -> String {
        """
        <?xml version="1.0" encoding="UTF-8"?>
        <ovf:Envelope xmlns:ovf="http://www.vmware.com/schema/ovf/1/envelope" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ovf:version="0.9">
          <ovf:References>
            <ovf:File ovf:href="\(disk)" ovf:id="file1" ovf:size="\(size)"/>
          </ovf:References>
          <ovf:Section xsi:type="ovf:DiskSection_Type">
            <ovf:Info>Meta-information about the virtual disks</ovf:Info>
            <ovf:Disk ovf:capacity="\(capacity)" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/specifications/vmdk.html#compressed"/>
          </ovf:Section>
          <ovf:Section xsi:type="ovf:NetworkSection_Type">
            <ovf:Info>The list of logical networks</ovf:Info>
            <ovf:Network ovf:name="VM Network"><ovf:Description>The VM Network network</ovf:Description></ovf:Network>
          </ovf:Section>
          <ovf:Content ovf:id="legacy" xsi:type="ovf:VirtualSystem_Type">
            <ovf:Info>A virtual machine</ovf:Info>
            <ovf:Section ovf:id="96" vmw:osType="debian4_64Guest" xsi:type="ovf:OperatingSystemSection_Type">
              <ovf:Info>The kind of installed guest operating system</ovf:Info>
            </ovf:Section>
            <ovf:Section xsi:type="ovf:VirtualHardwareSection_Type">
              <ovf:Info>Virtual hardware requirements for a virtual machine</ovf:Info>
              <ovf:System>
                <vssd:InstanceId>0</vssd:InstanceId>
                <vssd:VirtualSystemIdentifier>legacy</vssd:VirtualSystemIdentifier>
                <vssd:VirtualSystemType>vmx-04</vssd:VirtualSystemType>
              </ovf:System>
              <ovf:Item><rasd:Caption>1 virtual CPU</rasd:Caption><rasd:InstanceId>1</rasd:InstanceId><rasd:ResourceType>3</rasd:ResourceType><rasd:AllocationUnits>MegaHertz</rasd:AllocationUnits><rasd:VirtualQuantity>1</rasd:VirtualQuantity></ovf:Item>
              <ovf:Item><rasd:Caption>1024MB of memory</rasd:Caption><rasd:InstanceId>2</rasd:InstanceId><rasd:ResourceType>4</rasd:ResourceType><rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits><rasd:VirtualQuantity>1024</rasd:VirtualQuantity></ovf:Item>
              <ovf:Item><rasd:Caption>scsiController0</rasd:Caption><rasd:InstanceId>3</rasd:InstanceId><rasd:ResourceType>6</rasd:ResourceType><rasd:ResourceSubType>lsilogic</rasd:ResourceSubType><rasd:Address>0</rasd:Address><rasd:BusNumber>0</rasd:BusNumber></ovf:Item>
              <ovf:Item><rasd:Caption>disk1</rasd:Caption><rasd:InstanceId>4</rasd:InstanceId><rasd:ResourceType>17</rasd:ResourceType><rasd:HostResource>/disk/vmdisk1</rasd:HostResource><rasd:Parent>3</rasd:Parent><rasd:AddressOnParent>0</rasd:AddressOnParent></ovf:Item>
              <ovf:Item><rasd:Caption>ethernet0</rasd:Caption><rasd:InstanceId>5</rasd:InstanceId><rasd:ResourceType>10</rasd:ResourceType><rasd:ResourceSubType>E1000</rasd:ResourceSubType><rasd:AutomaticAllocation>true</rasd:AutomaticAllocation><rasd:Connection>VM Network</rasd:Connection><rasd:Address>\(mac)</rasd:Address></ovf:Item>
            </ovf:Section>
          </ovf:Content>
        </ovf:Envelope>
        """
    }
}
