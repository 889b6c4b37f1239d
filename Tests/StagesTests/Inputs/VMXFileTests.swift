import Foundation
import Testing
import TestSupport
@testable import Stages

/// `.vmx` files as VMware products write them, and hostile variants.
@Suite("VMX parser")
struct VMXFileTests {
    /// From libvirt's test data, `tests/vmx2xmldata/esx-in-the-wild-12.vmx` (an ESXi 8.0 VM, UEFI
    /// with Secure Boot, an empty SATA CD-ROM, LGPL-2.1+), verbatim.
    static let esxi80 = """
        .encoding = "UTF-8"
        config.version = "8"
        virtualHW.version = "20"
        vmci0.present = "TRUE"
        floppy0.present = "FALSE"
        svga.vramSize = "8388608"
        memSize = "2048"
        firmware = "efi"
        tools.upgrade.policy = "manual"
        sched.cpu.units = "mhz"
        vm.createDate = "1702444883756312"
        scsi0.virtualDev = "pvscsi"
        scsi0.present = "TRUE"
        sata0.present = "TRUE"
        sata0:0.startConnected = "FALSE"
        sata0:0.deviceType = "cdrom-image"
        sata0:0.fileName = ""
        sata0:0.present = "TRUE"
        scsi0:0.deviceType = "scsi-hardDisk"
        scsi0:0.fileName = "Auto-esx8.0-rhell9.3-efi-with-empty-cdrom.vmdk"
        sched.scsi0:0.shares = "normal"
        sched.scsi0:0.throughputCap = "off"
        scsi0:0.present = "TRUE"
        ethernet0.allowGuestConnectionControl = "FALSE"
        ethernet0.virtualDev = "vmxnet3"
        ethernet0.networkName = "VM Network"
        ethernet0.addressType = "vpx"
        ethernet0.generatedAddress = "00:50:56:a0:cf:2f"
        ethernet0.uptCompatibility = "TRUE"
        ethernet0.present = "TRUE"
        displayName = "Auto-esx8.0-rhell9.3-efi-with-empty-cdrom"
        guestOS = "rhel9-64"
        chipset.motherboardLayout = "acpi"
        uefi.secureBoot.enabled = "TRUE"
        toolScripts.afterPowerOn = "TRUE"
        toolScripts.afterResume = "TRUE"
        toolScripts.beforeSuspend = "TRUE"
        toolScripts.beforePowerOff = "TRUE"
        tools.syncTime = "FALSE"
        tools.guest.desktop.autolock = "TRUE"
        uuid.bios = "42 20 fc a7 11 dd d6 7e-19 cc fc ad 0a 37 c3 42"
        vc.uuid = "50 20 ca 5b 7a c1 5c 44-cf a1 9e 76 2e 2f 93 3b"
        nvram = "Auto-esx8.0-rhell9.3-efi-with-empty-cdrom.nvram"
        svga.present = "TRUE"
        hpet0.present = "TRUE"
        RemoteDisplay.maxConnections = "-1"
        sched.cpu.latencySensitivity = "normal"
        numa.autosize.cookie = "10012"
        numa.autosize.vcpu.maxPerVirtualNode = "1"
        cpuid.coresPerSocket.cookie = "1"
        pciBridge1.present = "TRUE"
        pciBridge1.virtualDev = "pciRootBridge"
        pciBridge1.functions = "1"
        pciBridge1:0.pxm = "0"
        pciBridge0.present = "TRUE"
        pciBridge0.virtualDev = "pciRootBridge"
        pciBridge0.functions = "1"
        pciBridge0.pxm = "-1"
        scsi0.pciSlotNumber = "32"
        ethernet0.pciSlotNumber = "33"
        sata0.pciSlotNumber = "34"
        scsi0.sasWWID = "50 05 05 67 11 dd d6 70"
        vmotion.checkpointFBSize = "4194304"
        vmotion.checkpointSVGAPrimarySize = "8388608"
        vmotion.svga.mobMaxSize = "8388608"
        vmotion.svga.graphicsMemoryKB = "8192"
        monitor.phys_bits_used = "45"
        softPowerOff = "FALSE"
        tools.remindInstall = "TRUE"
        svga.guestBackedPrimaryAware = "TRUE"
        guestInfo.detailed.data = "architecture='X86' bitness='64' cpeString='cpe:/o:redhat:enterprise_linux:9::baseos' distroAddlVersion='9.3 (Plow)' distroName='Red Hat Enterprise Linux' distroVersion='9.3' familyName='Linux' kernelVersion='5.14.0-362.8.1.el9_3.x86_64' prettyName='Red Hat Enterprise Linux 9.3 (Plow)'"
        vmxstats.filename = "esx8.0-rhel9.3-x86_64.scoreboard"
        migrate.hostLog = "Auto-esx8.0-rhell9.3-efi-with-empty-cdrom-3ea47ba9.hlog"
        sched.cpu.min = "0"
        sched.cpu.shares = "normal"
        sched.mem.min = "0"
        sched.mem.minSize = "0"
        sched.mem.shares = "normal"
        migrate.encryptionMode = "opportunistic"
        ftcpt.ftEncryptionMode = "ftEncryptionOpportunistic"
        viv.moid = "e00e5864-a7ed-4b49-b99a-71da911f679c:vm-1008:OCn73UgW4dBwF0sgk/5SmLb24snLgdgGTDWbdB/O5g4="
        sched.swap.derivedName = "/vmfs/volumes/c97af7e9-686a74ad/Auto-esx8.0-rhell9.3-efi-with-empty-cdrom/Auto-esx8.0-rhell9.3-efi-with-empty-cdrom-155bb14b.vswp"
        uuid.location = "56 4d 4b 9e d2 17 63 9b-98 0e 92 5d 77 2a a3 83"
        scsi0:0.redo = ""
        vmci0.id = "171426626"
        cleanShutdown = "FALSE"

        """

    /// From libvirt's test data, `tests/vmx2xmldata/vmx2xml-fusion-in-the-wild-1.vmx` (VMware Fusion,
    /// BIOS, two generated MACs, an IDE CD-ROM drive, LGPL-2.1+), its first 40 lines verbatim.
    static let fusion = """
        .encoding = "UTF-8"
        config.version = "8"
        virtualHW.version = "9"
        memsize = "3572"
        MemAllowAutoScaleDown = "FALSE"
        MemTrimRate = "-1"
        displayName = "ATTM_VM"
        guestOS = "winxppro"
        numvcpus = "2"
        sound.present = "TRUE"
        sound.filename = "-1"
        sound.autodetect = "TRUE"
        usb.present = "TRUE"
        ethernet0.present = "TRUE"
        ethernet0.addressType = "generated"
        ethernet0.connectionType = "bridged"
        ethernet1.present = "TRUE"
        ethernet1.addressType = "generated"
        ethernet1.connectionType = "bridged"
        scsi0:0.present = "TRUE"
        scsi0:0.fileName = "ATTM_VM.vmdk"
        pciBridge0.present = "TRUE"
        tools.upgrade.policy = "useGlobal"
        ehci.present = "TRUE"
        ide0:0.present = "TRUE"
        ide0:0.autodetect = "TRUE"
        ide0:0.filename = "auto detect"
        ide0:0.deviceType = "atapi-cdrom"
        scsi0.present = "TRUE"
        scsi0.virtualDev = "buslogic"
        buslogic.noDriver = "FALSE"
        extendedConfigFile = "ATTM_VM.vmxf"
        virtualHW.productCompatibility = "hosted"
        ethernet0.generatedAddress = "00:0c:29:3b:64:ea"
        ethernet1.generatedAddress = "00:0c:29:3b:64:f4"
        usb:1.present = "TRUE"
        usb:1.deviceType = "hub"
        floppy0.startConnected = "FALSE"
        usb:0.present = "TRUE"
        usb:0.deviceType = "hid"

        """

    static func settings(_ text: String) throws -> VMXSettings {
        try VMXSettings(try VMXFile.parse(Array(text.utf8), file: "/q/vm.vmx"), file: "/q/vm.vmx")
    }

    static func refusal(_ text: String) -> String {
        do {
            _ = try settings(text)
            return "accepted"
        } catch let error as StageError {
            #expect(error.file == "/q/vm.vmx")
            return error.message
        } catch {
            return "\(error)"
        }
    }

    @Test func anESXi8ExportWithSecureBootAndAnEmptyCDROM() throws {
        let vm = try Self.settings(Self.esxi80)
        #expect(vm.name == "Auto-esx8.0-rhell9.3-efi-with-empty-cdrom")
        #expect(vm.memoryMiB == 2048)
        #expect(vm.vcpus == nil)
        #expect(vm.firmware == .uefi)
        #expect(vm.guestOS == "rhel9-64")
        #expect(vm.nics == [NetworkInterface(mac: "00:50:56:a0:cf:2f", network: "VM Network")])
        #expect(vm.disks == [.init(device: "scsi0:0", fileName: "Auto-esx8.0-rhell9.3-efi-with-empty-cdrom.vmdk")])
        #expect(vm.otherFiles == ["Auto-esx8.0-rhell9.3-efi-with-empty-cdrom.nvram"])
        #expect(vm.notes.contains { $0.contains("Secure Boot") })
        #expect(vm.notes.contains("sata0:0 is a CD-ROM drive: not converted"))
    }

    @Test func aFusionVMWithTwoGeneratedMACsAndAnIDECDROMDrive() throws {
        let vm = try Self.settings(Self.fusion)
        #expect(vm.name == "ATTM_VM" && vm.memoryMiB == 3572 && vm.vcpus == 2 && vm.firmware == .bios)
        #expect(vm.nics.map(\.mac) == ["00:0c:29:3b:64:ea", "00:0c:29:3b:64:f4"])
        #expect(vm.disks.map(\.fileName) == ["ATTM_VM.vmdk"])
        #expect(vm.notes.contains("ide0:0 is a CD-ROM drive: not converted"))
        #expect(vm.otherFiles == ["ATTM_VM.vmxf"])
    }

    @Test func disksAreInControllerTypeThenIndexThenUnitOrder() throws {
        let vm = try Self.settings("""
            ide0:0.present = "TRUE"
            ide0:0.fileName = "e.vmdk"
            nvme0:0.present = "TRUE"
            nvme0:0.fileName = "d.vmdk"
            sata0:1.present = "TRUE"
            sata0:1.fileName = "c.vmdk"
            scsi1:0.present = "TRUE"
            scsi1:0.fileName = "b.vmdk"
            scsi0:2.present = "TRUE"
            scsi0:2.fileName = "a2.vmdk"
            scsi0:1.present = "TRUE"
            scsi0:1.fileName = "a1.vmdk"
            scsi0:3.present = "FALSE"
            scsi0:3.fileName = "unplugged.vmdk"
            ide1:0.present = "TRUE"
            ide1:0.deviceType = "cdrom-image"
            ide1:0.fileName = "install.iso"
            """)
        #expect(vm.disks.map(\.fileName) == ["a1.vmdk", "a2.vmdk", "b.vmdk", "c.vmdk", "d.vmdk", "e.vmdk"])
        #expect(vm.otherFiles == ["install.iso"])
        #expect(vm.notes.contains("scsi0:3 (unplugged.vmdk) is not present: not converted"))
        #expect(vm.notes.contains("ide1:0 is a CD-ROM image (install.iso): not converted"))
    }

    @Test func staticMACsCoresPerSocketEscapesAndOldUnquotedValues() throws {
        let vm = try Self.settings("""
            #!/usr/bin/vmware
            config.version = 4
            displayName = "web |22prod|22 |7C eu"
            numvcpus = "4"
            cpuid.coresPerSocket = "2"
            ethernet0.present = "TRUE"
            ethernet0.addressType = "static"
            ethernet0.address = "00:50:56:12:34:56"
            ethernet0.generatedAddress = "00:0c:29:00:00:01"
            scsi0:0.present = TRUE
            scsi0:0.fileName = "disk.vmdk"
            """)
        #expect(vm.name == "web \"prod\" | eu")
        #expect(vm.vcpus == 4)
        #expect(vm.notes.contains { $0.contains("2 socket(s) of 2 core(s)") })
        #expect(vm.nics.first?.mac == "00:50:56:12:34:56")
    }

    static let disk = "scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"disk.vmdk\"\n"

    @Test("hostile or broken .vmx files are refused naming the problem", arguments: [
        (disk + "memsize = \"99999999999999999999\"", "not a whole number"),
        (disk + "memsize = \"-1\"", "not a whole number"),
        (disk + "numvcpus = \"3\"\ncpuid.coresPerSocket = \"2\"", "does not divide"),
        (disk + "cpuid.coresPerSocket = \"0\"", "does not divide"),
        (disk + "displayName = \"a\"\ndisplayName = \"b\"", "given twice with different values"),
        (disk + "displayName = \"unterminated", "no closing quote"),
        (disk + "displayName = \"a\" trailing", "after the closing quote"),
        (disk + "just some text", "not a 'key = value' assignment"),
        (disk + "bad key! = \"x\"", "malformed key"),
        (disk + "displayName = \"a|0Ab\"", "control character"),
        (disk + "firmware = \"coreboot\"", "neither"),
        (disk + "ethernet0.present = \"TRUE\"\nethernet0.generatedAddress = \"00:50:56:zz:00:01\"", "malformed MAC"),
        (disk + "ethernet12.present = \"TRUE\"", "NICs numbered 10"),
        (disk + "scsi9:0.present = \"TRUE\"\nscsi9:0.fileName = \"x.vmdk\"", "beyond"),
        (disk + "scsi0:99999999999999999999999.present = \"TRUE\"", "beyond"),
        (disk + "ide7.present = \"TRUE\"", "beyond"),
        ("scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"/vmfs/volumes/ds2/other/other.vmdk\"", "outside the .vmx's folder"),
        ("scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"../other/other.vmdk\"", "outside the .vmx's folder"),
        ("scsi0:0.present = \"TRUE\"\nscsi0:0.deviceType = \"rawDisk\"\nscsi0:0.fileName = \"rdm.vmdk\"", "only disks backed by a file"),
        ("scsi0:0.present = \"TRUE\"", "has no fileName"),
        ("displayName = \"diskless\"", "names no disk"),
    ] as [(String, String)])
    func hostile(_ text: String, _ expected: String) {
        let message = Self.refusal(text)
        #expect(message.contains(expected), "\(message)")
    }

    @Test func bytesThatAreNotUTF8OrTooManyAreRefused() {
        #expect(throws: StageError.self) { try VMXFile.parse(Array(Self.disk.utf8) + [0x64, 0x3d, 0x22, 0xff, 0x22], file: "/q/vm.vmx") }
        #expect(throws: StageError.self) { try VMXFile.parse(Array(Self.disk.utf8) + [0x00], file: "/q/vm.vmx") }
        #expect(throws: StageError.self) { try VMXFile.parse([UInt8](repeating: 0x23, count: VMXFile.maximumBytes + 1), file: "/q/vm.vmx") }
        let many = (0...VMXFile.maximumEntries).map { "k\($0) = \"v\"" }.joined(separator: "\n")
        #expect(throws: StageError.self) { try VMXFile.parse(Array(many.utf8), file: "/q/vm.vmx") }
        // A file from a Windows editor (CRLF) and with a BOM reads the same.
        let crlf = try? VMXFile.parse([0xef, 0xbb, 0xbf] + Array(Self.disk.replacingOccurrences(of: "\n", with: "\r\n").utf8), file: "/q/vm.vmx")
        #expect(crlf?["scsi0:0.fileName"] == "disk.vmdk")
    }

    @Test func theReaderLocatesTheDisksAndNamesWhatIsMissing() async throws {
        let dir = try Scratch("vmx-reader")
        try await sh(["qemu-img", "create", "-q", "-f", "vmdk", dir.path("web.vmdk"), "16M"])
        try (Self.disk.replacingOccurrences(of: "disk.vmdk", with: "web.vmdk")
             + "displayName = \"web01\"\nmemsize = \"512\"\nnvram = \"web01.nvram\"\nscsi0:1.present = \"TRUE\"\nscsi0:1.fileName = \"data.vmdk\"\n")
            .write(toFile: dir.path("web01.vmx"), atomically: true, encoding: .utf8)
        #expect(throws: StageError.self) { try VMXDirectoryReader.read(dir.file("web01.vmx")) }
        do {
            _ = try VMXDirectoryReader.read(dir.file("web01.vmx"))
        } catch let error as StageError {
            #expect(error.message.contains("disk scsi0:1 is 'data.vmdk', which is missing"), "\(error.message)")
        }
        try await sh(["qemu-img", "create", "-q", "-f", "vmdk", dir.path("data.vmdk"), "8M"])
        let reading = try await SourceReader.read(source: dir.file("web01.vmx"), kind: .vmx, scratchDirectory: dir.url)
        #expect(reading.description.name == "web01")
        #expect(reading.description.memoryMiB == 512)
        #expect(reading.description.origin == "vmx")
        #expect(reading.description.disks.map { URL(fileURLWithPath: $0.locator.path).lastPathComponent } == ["web.vmdk", "data.vmdk"])
        #expect(reading.description.disks.map(\.id) == ["disk0", "scsi0-1"])
        #expect(reading.facts.contains("web01.nvram is named by the .vmx and is no disk: absent or outside the folder, not needed"), "\(reading.facts)")
        #expect(try InputProbe.identify(dir.file("web01.vmx")) == .vmx)
    }
}
