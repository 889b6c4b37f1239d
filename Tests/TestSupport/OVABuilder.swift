import Foundation

/// Builds a VMware-style OVA (OVF 1.0 + streamOptimized VMDK + SHA-256 .mf) with `tar`.
public enum OVABuilder {
    public static func make(name: String, raw: String, in directory: String, mac: String = "00:50:56:aa:bb:cc",
                     firmware: String = "bios") async throws -> String {
        let work = directory + "/ova-\(name)"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let disk = "\(name)-disk1.vmdk"
        try await sh(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, work + "/" + disk])
        let capacity = try FileManager.default.attributesOfItem(atPath: raw)[.size] as? NSNumber ?? 0
        let ovf = """
            <?xml version="1.0" encoding="UTF-8"?>
            <Envelope vmw:buildId="build-1" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
              <References>
                <File ovf:href="\(disk)" ovf:id="file1"/>
              </References>
              <DiskSection>
                <Info>Virtual disk information</Info>
                <Disk ovf:capacity="\(capacity.int64Value)" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
              </DiskSection>
              <NetworkSection>
                <Info>The list of logical networks</Info>
                <Network ovf:name="VM Network"><Description>The VM Network network</Description></Network>
              </NetworkSection>
              <VirtualSystem ovf:id="\(name)">
                <Info>A virtual machine</Info>
                <Name>\(name)</Name>
                <VirtualHardwareSection>
                  <Info>Virtual hardware requirements</Info>
                  <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID><vssd:VirtualSystemIdentifier>\(name)</vssd:VirtualSystemIdentifier><vssd:VirtualSystemType>vmx-14</vssd:VirtualSystemType></System>
                  <Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits><rasd:ElementName>2 virtual CPU(s)</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
                  <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ElementName>1024MB of memory</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>1024</rasd:VirtualQuantity></Item>
                  <Item><rasd:Address>0</rasd:Address><rasd:ElementName>SCSI controller 0</rasd:ElementName><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>lsilogic</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></Item>
                  <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:ElementName>Hard disk 1</rasd:ElementName><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
                  <Item><rasd:Address>\(mac)</rasd:Address><rasd:AddressOnParent>7</rasd:AddressOnParent><rasd:AutomaticAllocation>true</rasd:AutomaticAllocation><rasd:Connection>VM Network</rasd:Connection><rasd:ElementName>Network adapter 1</rasd:ElementName><rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>
                  <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="\(firmware == "uefi" ? "efi" : "bios")"/>
                </VirtualHardwareSection>
              </VirtualSystem>
            </Envelope>
            """
        try ovf.write(toFile: work + "/\(name).ovf", atomically: true, encoding: .utf8)
        var manifest = ""
        for member in [name + ".ovf", disk] { manifest += "SHA256(\(member))= \(try await TestDisks.sha256(work + "/" + member))\n" }
        try manifest.write(toFile: work + "/\(name).mf", atomically: true, encoding: .utf8)
        let ova = directory + "/\(name).ova"
        try await sh(["tar", "-C", work, "--format=ustar", "-cf", ova, "\(name).ovf", "\(name).mf", disk])
        try FileManager.default.removeItem(atPath: work)
        return ova
    }
}
