import Foundation
import Testing
@testable import Stages

/// The domain settings a Windows guest gets from its fix report.
@Suite("DomainXMLWriter for Windows guests", .serialized)
struct DomainXMLWindowsTests {
    private let vm = VMDescription(
        name: "win01", vcpus: 2, memoryMiB: 4096, firmware: .bios,
        disks: [SourceDisk(id: "disk0", locator: DiskLocator(path: "/src/w.vmdk", format: "vmdk")),
                SourceDisk(id: "disk1", locator: DiskLocator(path: "/src/d.vmdk", format: "vmdk"))],
        nics: [NetworkInterface(mac: "00:50:56:01:02:03", network: "VM Network")],
        origin: "ovf")

    private let disks = [DomainXMLWriter.Disk(path: "/out/win01/win01.qcow2", format: "qcow2"),
                         DomainXMLWriter.Disk(path: "/out/win01/win01-disk1.qcow2", format: "qcow2")]

    private func report(diskBus: String, nic: String, firmware: String) -> WindowsFixReport {
        WindowsFixReport(systemRoot: "/Windows", currentControlSet: "ControlSet001", productVariant: "server",
                         firmware: firmware, diskBus: diskBus, diskBusReason: "test", nicModel: nic)
    }

    private func render(_ report: WindowsFixReport, hyperv: Bool) throws -> String {
        var options = ConversionOptions()
        options.winHyperv = hyperv
        let platform = GuestPlatform.from(GuestFixReport(inspection: inspection, windows: report), options: options)
        return try DomainXMLWriter().render(vm: vm, disks: disks, options: options, uuid: nil, platform: platform)
    }

    private var inspection: GuestInspection {
        GuestInspection(type: "windows", distro: "windows", productName: "Windows Server 2019", majorVersion: 10,
                        minorVersion: 0, arch: "x86_64", packageFormat: "unknown", packageManagement: "unknown",
                        rootDevice: "/dev/sda2", mountpoints: ["/": "/dev/sda2"], hostname: "win01", osinfo: "win2k19",
                        installedKernels: [])
    }

    private func expectAcceptedByLibvirt(_ xml: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        try await OutputTestImages.expectAcceptedByLibvirt(xml, sourceLocation: sourceLocation)
    }

    @Test("drivers injected, Hyper-V on: virtio disks and NIC, local time, enlightenments")
    func virtioWithEnlightenments() async throws {
        let xml = try render(report(diskBus: "virtio", nic: "virtio", firmware: "bios"), hyperv: true)
        try await expectAcceptedByLibvirt(xml)
        #expect(xml.contains("<target dev='vda' bus='virtio'/>") && xml.contains("<target dev='vdb' bus='virtio'/>"))
        #expect(xml.contains("<model type='virtio'/>"))
        #expect(xml.contains("<clock offset='localtime'>"))
        #expect(xml.contains("<timer name='hypervclock' present='yes'/>"))
        #expect(xml.contains("<timer name='hpet' present='no'/>"))
        for feature in ["relaxed", "vapic", "vpindex", "runtime", "synic", "stimer", "reset", "frequencies"] {
            #expect(xml.contains("<\(feature) state='on'/>"), "missing \(feature)")
        }
        #expect(xml.contains("<spinlocks state='on' retries='8191'/>"))
        #expect(!xml.contains("<loader"))
    }

    @Test("no drivers, Hyper-V off: SATA disks, e1000e, no enlightenments, still local time")
    func sataWithoutEnlightenments() async throws {
        let xml = try render(report(diskBus: "sata", nic: "e1000e", firmware: "bios"), hyperv: false)
        try await expectAcceptedByLibvirt(xml)
        #expect(xml.contains("<target dev='sda' bus='sata'/>") && xml.contains("<target dev='sdb' bus='sata'/>"))
        #expect(!xml.contains("bus='virtio'"))
        #expect(xml.contains("<model type='e1000e'/>"))
        #expect(!xml.contains("<hyperv"))
        #expect(!xml.contains("hypervclock"))
        #expect(xml.contains("<clock offset='localtime'>"))
        #expect(xml.contains("<model type='vga'/>"))
    }

    @Test("a guest that boots through its ESP gets UEFI even when the source said BIOS; vm_uefi still wins")
    func firmwareFromTheDisk() async throws {
        let xml = try render(report(diskBus: "virtio", nic: "virtio", firmware: "uefi"), hyperv: true)
        try await expectAcceptedByLibvirt(xml)
        #expect(xml.contains("OVMF_CODE_4M.fd"))

        var options = ConversionOptions()
        options.vmUEFI = false
        let platform = GuestPlatform.windows(report(diskBus: "virtio", nic: "virtio", firmware: "uefi"), options: options)
        let forced = try DomainXMLWriter().render(vm: vm, disks: disks, options: options, platform: platform)
        #expect(!forced.contains("<loader"))
    }

    @Test("a Linux fix report keeps the Linux domain")
    func linuxUnaffected() throws {
        var options = ConversionOptions()
        options.winHyperv = true
        options.winVirtio = true
        let platform = GuestPlatform.from(GuestFixReport(inspection: inspection), options: options)
        #expect(platform == .linux)
        let xml = try DomainXMLWriter().render(vm: vm, disks: disks, options: options, platform: platform)
        #expect(xml.contains("<clock offset='utc'/>") && !xml.contains("<hyperv") && xml.contains("bus='virtio'"))
    }

    @Test("SATA names")
    func sataNames() {
        #expect(DomainXMLWriter.sataDiskName(0) == "sda")
        #expect(DomainXMLWriter.sataDiskName(26) == "sdaa")
    }
}
