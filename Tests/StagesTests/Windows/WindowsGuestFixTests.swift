import TestSupport
import Foundation
import Testing
@testable import GuestFix
@testable import Stages

/// The Windows path end to end on phony disks (scripts/build-phony-windows): the fixer runs
/// on qcow2 overlays, then the hives and files are read back through a separate guestfish
/// appliance and hivexregedit, independent of the code under test.
@Suite("Windows guest fix on phony disks", .serialized, .tags(.guest), .requiresLibguestfs)
struct WindowsGuestFixTests {
    static let mouseClass = "ControlSet001\\Control\\Class\\{4D36E96F-E325-11CE-BFC1-08002BE10318}"
    static let vmwareServices = ["VMTools", "vmci", "vm3dmp", "vmmouse", "vmhgfs", "vmvss"]
    static let ids = [
        "viostor": ["PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00", "PCI\\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01"],
        "vioscsi": ["PCI\\VEN_1AF4&DEV_1004&SUBSYS_00081AF4&REV_00", "PCI\\VEN_1AF4&DEV_1048&SUBSYS_11001AF4&REV_01"],
    ]

    /// Every (key|value) the fix may change, written out independently of the code under test.
    static func expectedSystemChanges(driverDatabase: Bool, packages: [String: String], vmware: Bool) -> Set<String> {
        var expected: Set<String> = []
        func add(_ key: String, _ names: [String]) { for name in names { expected.insert("\(key.lowercased())|\(name.lowercased())") } }
        for driver in ["viostor", "vioscsi"] {
            add("ControlSet001\\Services\\\(driver)", ["Type", "Start", "ErrorControl", "Group", "ImagePath"])
            add("ControlSet001\\Services\\\(driver)\\Parameters\\PnpInterface", ["5"])
            let package = packages[driver] ?? "?"
            for id in ids[driver] ?? [] {
                if driverDatabase {
                    add("DriverDatabase\\DeviceIds\\\(id)", ["\(driver).inf"])
                    add("DriverDatabase\\DriverPackages\\\(package)\\Descriptors\\\(id)", ["Configuration", "Description", "Manufacturer"])
                } else {
                    add("ControlSet001\\Control\\CriticalDeviceDatabase\\" + id.replacingOccurrences(of: "\\", with: "#"), ["Service", "ClassGUID"])
                }
            }
            if driverDatabase {
                add("DriverDatabase\\DriverInfFiles\\\(driver).inf", ["", "Active", "Configurations"])
                add("DriverDatabase\\DriverPackages\\\(package)", ["", "Provider", "SignerScore", "StatusFlags"])
                add("DriverDatabase\\DriverPackages\\\(package)\\Configurations\\\(driver)_inst", ["ConfigFlags", "Service"])
            }
        }
        if vmware {
            for service in vmwareServices { add("ControlSet001\\Services\\\(service)", ["Start"]) }
            add(mouseClass, ["UpperFilters"])
        }
        return expected
    }

    static let expectedSoftwareChanges: Set<String> = [
        "microsoft\\windows\\currentversion|devicepath", "microsoft\\windows\\currentversion\\runonce|hyper2kvm-firstboot",
    ]

    static func package(_ driver: String, tree: URL, os: String) throws -> String {
        let digest = try FileDigest.sha256(of: tree.appendingPathComponent("\(driver)/\(os)/amd64/\(driver).inf"))
        return "\(driver).inf_amd64_\(digest.prefix(16))"
    }

    @Test("virtio drivers injected: Windows 10 BIOS from a directory, Server 2008 R2 UEFI from an ISO; hives change exactly as intended")
    func injection() async throws {
        let fixtures = try await WindowsTestGuests.ensure()
        let scratch = try Scratch()
        let biosSource = fixtures.appendingPathComponent("win10-bios.img")
        let uefiSource = fixtures.appendingPathComponent("win2k8r2-uefi.img")
        let digests = (try FileDigest.sha256(of: biosSource), try FileDigest.sha256(of: uefiSource))

        var biosOptions = WindowsTestGuests.virtioOptions(source: "virtio-win")
        biosOptions.removeVMwareTools = true
        let uefiOptions = WindowsTestGuests.virtioOptions(source: "virtio-win.iso")
        let biosOverlay = scratch.file("bios.qcow2")
        let uefiOverlay = scratch.file("uefi.qcow2")
        let started = ContinuousClock.now
        async let biosFix = WindowsTestGuests.fix("win10-bios", options: biosOptions, overlay: biosOverlay)
        async let uefiFix = WindowsTestGuests.fix("win2k8r2-uefi", options: uefiOptions, overlay: uefiOverlay)
        let (bios, uefi) = try await (biosFix, uefiFix)
        print("windows fixes: \(ContinuousClock.now - started); bios steps: \(bios.durations.map { "\($0.step)=\(String(format: "%.1f", $0.seconds))s" })")
        // The preflight's verdict on these same reports: virtio storage added, so it boots; the
        // BIOS guest's VMware Tools services were disabled, a warning the operator sees.
        let biosVerdict = PreflightVerdict.judge(report: bios, failure: nil)
        #expect(biosVerdict.outcome == .willBootWithWarnings)
        #expect(biosVerdict.reasons.contains { $0.contains("VMware Tools services disabled") })
        #expect(biosVerdict.passed.contains { $0.hasPrefix("Windows: boot-start storage driver") })
        #expect(PreflightVerdict.judge(report: uefi, failure: nil).outcome == .willBoot)

        // Inspection and the report.
        #expect(bios.inspection.type == "windows")
        #expect(bios.inspection.productName == "Windows 10 Pro")
        #expect(bios.inspection.majorVersion == 10 && bios.inspection.minorVersion == 0)
        #expect(bios.inspection.arch == "x86_64")
        #expect(bios.inspection.hostname == "PHONY-WIN10")
        #expect(uefi.inspection.productName == "Windows Server 2008 R2 Standard")
        #expect(uefi.inspection.rootDevice == "/dev/sda2")
        let biosReport = try #require(bios.windows)
        let uefiReport = try #require(uefi.windows)
        #expect(biosReport.systemRoot == "/Windows")
        #expect(biosReport.currentControlSet == "ControlSet001")
        #expect(biosReport.productVariant == "client")
        #expect(uefiReport.productVariant == "server")
        #expect(biosReport.firmware == "bios")
        #expect(uefiReport.firmware == "uefi")
        for report in [biosReport, uefiReport] {
            #expect(report.diskBus == "virtio")
            #expect(report.nicModel == "virtio")
            #expect(report.storageDriver == "viostor")
            #expect(report.stagedForFirstBoot == ["viostor", "vioscsi", "netkvm", "balloon", "vioser", "viorng"])
        }
        #expect(biosReport.driverSource == fixtures.appendingPathComponent("virtio-win").path + " (directory): w10/amd64")
        #expect(uefiReport.driverSource == fixtures.appendingPathComponent("virtio-win.iso").path + " (iso): 2k8R2/amd64")
        #expect(bios.warnings.contains { $0.contains("VMware Tools services disabled") })

        // Read back through a separate appliance.
        let tree = fixtures.appendingPathComponent("virtio-win")
        let packages = ["viostor": try Self.package("viostor", tree: tree, os: "w10"), "vioscsi": try Self.package("vioscsi", tree: tree, os: "w10")]
        let hives = ["/Windows/System32/config/SYSTEM", "/Windows/System32/config/SOFTWARE",
                     "/Windows/System32/drivers/viostor.sys", "/Windows/Drivers/VirtIO/hyper2kvm-firstboot.cmd"]
        let listings = try await WindowsGuestfishReader.read([
            .init(image: biosOverlay, device: "/dev/sda1", copyOut: hives, into: scratch.file("bios-after")),
            .init(image: uefiOverlay, device: "/dev/sda2", copyOut: hives, into: scratch.file("uefi-after")),
        ])

        for (name, report, listing, os, driverDatabase, vmware) in [
            ("win10-bios", bios, listings[0], "w10", true, true), ("win2k8r2-uefi", uefi, listings[1], "2k8R2", false, false),
        ] {
            let after = scratch.file(name == "win10-bios" ? "bios-after" : "uefi-after")
            // Exactly the intended SYSTEM values changed, and the report lists exactly them.
            let systemBefore = try await RegExport(hive: fixtures.appendingPathComponent("\(name).SYSTEM"))
            let systemAfter = try await RegExport(hive: after.appendingPathComponent("SYSTEM"))
            let systemChanges = systemAfter.changes(from: systemBefore)
            #expect(systemChanges == Self.expectedSystemChanges(driverDatabase: driverDatabase, packages: packages, vmware: vmware), "\(name)")
            let softwareBefore = try await RegExport(hive: fixtures.appendingPathComponent("\(name).SOFTWARE"))
            let softwareAfter = try await RegExport(hive: after.appendingPathComponent("SOFTWARE"))
            #expect(softwareAfter.changes(from: softwareBefore) == Self.expectedSoftwareChanges, "\(name)")
            let reported = Set(report.windows?.registryChanges.map { "\($0.key.lowercased())|\($0.value.lowercased())" } ?? [])
            #expect(reported == systemChanges.union(Self.expectedSoftwareChanges), "\(name)")
            // New keys are only those the changes live under.
            let newKeys = Set(systemAfter.keys.keys).subtracting(systemBefore.keys.keys)
            #expect(newKeys.allSatisfy { key in systemChanges.contains { $0.hasPrefix(key.lowercased()) } }, "\(name)")

            // The boot-start service, value by value.
            let service = "ControlSet001\\Services\\viostor"
            #expect(systemAfter.value(service, "Type") == "dword:00000001")
            #expect(systemAfter.value(service, "Start") == "dword:00000000")
            #expect(systemAfter.value(service, "ErrorControl") == "dword:00000001")
            #expect(systemAfter.value(service, "Group") == RegExport.hex(1, .string("SCSI miniport")))
            #expect(systemAfter.value(service, "ImagePath") == RegExport.hex(2, .expandString("system32\\drivers\\viostor.sys")))
            if driverDatabase {
                #expect(systemAfter.value("DriverDatabase\\DeviceIds\\PCI\\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00", "viostor.inf") == "hex(3):01,ff,00,00")
                #expect(systemAfter.value("DriverDatabase\\DriverPackages\\\(packages["viostor"] ?? "")\\Configurations\\viostor_inst", "Service")
                    == RegExport.hex(1, .string("viostor")))
            } else {
                let key = "ControlSet001\\Control\\CriticalDeviceDatabase\\PCI#VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00"
                #expect(systemAfter.value(key, "Service") == RegExport.hex(1, .string("viostor")))
                #expect(systemAfter.value(key, "ClassGUID") == RegExport.hex(1, .string("{4D36E97B-E325-11CE-BFC1-08002BE10318}")))
            }
            if vmware {
                for vmService in Self.vmwareServices {
                    #expect(systemAfter.value("ControlSet001\\Services\\\(vmService)", "Start") == "dword:00000004", "\(vmService)")
                }
                #expect(systemAfter.value(Self.mouseClass, "UpperFilters") == RegExport.hex(7, .multiString(["mouclass"])))
            }
            #expect(softwareAfter.value("Microsoft\\Windows\\CurrentVersion", "DevicePath")
                == RegExport.hex(2, .expandString("%SystemRoot%\\inf;%SystemRoot%\\Drivers\\VirtIO")))
            #expect(softwareAfter.value("Microsoft\\Windows\\CurrentVersion\\RunOnce", "hyper2kvm-firstboot")
                == RegExport.hex(2, .expandString("cmd.exe /c \"%SystemRoot%\\Drivers\\VirtIO\\hyper2kvm-firstboot.cmd\"")))

            // The files: boot driver in System32\drivers (the tree's bytes), the rest staged.
            let sys = try String(contentsOf: after.appendingPathComponent("viostor.sys"), encoding: .utf8)
            #expect(sys == "viostor \(os) amd64 fake driver file\n", "\(name)")
            let files = Set(listing.map { $0.lowercased() })
            var expectedFiles = ["windows/system32/drivers/viostor.sys", "windows/system32/drivers/vioscsi.sys",
                                 "windows/drivers/virtio/hyper2kvm-firstboot.cmd"]
            for driver in ["viostor", "vioscsi", "netkvm", "balloon", "vioser", "viorng"] {
                for ext in ["sys", "inf", "cat"] { expectedFiles.append("windows/drivers/virtio/\(driver)/\(driver).\(ext)") }
            }
            if driverDatabase {
                for driver in ["viostor", "vioscsi"] {
                    expectedFiles.append("windows/system32/driverstore/filerepository/\(packages[driver] ?? "")/\(driver).sys".lowercased())
                }
            }
            for file in expectedFiles { #expect(files.contains(file), "\(name): \(file)") }
            // Reported copies are exactly files that exist, and include every expected one.
            let copied = Set(report.windows?.filesCopied.map { String($0.dropFirst()).lowercased() } ?? [])
            #expect(copied.isSuperset(of: expectedFiles), "\(name)")
            #expect(copied.isSubset(of: files), "\(name)")
            let script = try String(contentsOf: after.appendingPathComponent("hyper2kvm-firstboot.cmd"), encoding: .utf8)
            #expect(script.contains("pnputil -i -a"))
            #expect(script.contains("msiexec.exe /x {E2C3A8AA-8B33-4B0E-9F26-1D0D2E3B9A01} /qn /norestart") == vmware, "\(name)")
        }

        #expect(try FileDigest.sha256(of: biosSource) == digests.0)
        #expect(try FileDigest.sha256(of: uefiSource) == digests.1)
    }
}

/// Each way the Windows path must refuse, with a clear message and the source untouched, and
/// `win_virtio: false`. One appliance each: two per run in rotation (`WindowsPhonyRotation`),
/// one after the other in a guest-work slot.
@Suite("Windows guest fix errors", .serialized, .guestWorkSlot, .tags(.guest), .requiresLibguestfs)
struct WindowsGuestFixErrorTests {
    func expectFailure(_ image: String, options: ConversionOptions, _ check: (StageError) -> Void) async throws {
        let scratch = try Scratch()
        let source = try await WindowsTestGuests.image(image)
        let digest = try FileDigest.sha256(of: source)
        let error = await #expect(throws: StageError.self) {
            try await WindowsTestGuests.fix(image, options: options, overlay: scratch.file("overlay.qcow2"))
        }
        if let error {
            print("\(image): \(error)")
            check(error)
            // The job fails with it; the preflight (dry_run, inspect) makes it its verdict.
            #expect(PreflightStep.isVerdict(error), "\(error.code) would fail a preflight instead of giving a verdict")
            #expect(PreflightVerdict.judge(report: nil, failure: error.description).outcome == .willNotBoot)
        }
        #expect(try FileDigest.sha256(of: source) == digest)
    }

    @Test("a driver tree without the guest's version names what was looked for and where", .inWindowsPhonyRotation("win-wrong-version"))
    func wrongVersion() async throws {
        let options = WindowsTestGuests.virtioOptions(source: "virtio-win-w7")
        try await expectFailure("win10-bios", options: options) { error in
            #expect(error.message.contains("viostor/w10/amd64/viostor.sys"))
            #expect(error.message.contains("virtio-win-w7"))
            #expect(error.message.contains("only for w7/amd64"))
        }
    }

    @Test("a SYSTEM hive that cannot be parsed", .inWindowsPhonyRotation("win-bad-hive"))
    func damagedHive() async throws {
        try await expectFailure("win10-badhive", options: WindowsTestGuests.virtioOptions(source: "virtio-win")) { error in
            #expect(error.message.contains("cannot be parsed"))
            #expect(error.message.contains("/dev/sda1:/Windows/System32/config/SYSTEM"))
            #expect(!error.message.contains("config/SOFTWARE,"))
        }
    }

    @Test("a BitLocker volume", .inWindowsPhonyRotation("win-bitlocker"))
    func bitLocker() async throws {
        try await expectFailure("bitlocker", options: WindowsTestGuests.virtioOptions(source: "virtio-win")) { error in
            #expect(error.message.contains("BitLocker"))
            #expect(error.message.contains("/dev/sda1"))
            #expect(error.message.contains("manage-bde -off"))
        }
    }

    @Test("a hibernated (Fast Startup) NTFS volume", .inWindowsPhonyRotation("win-hibernated"))
    func hibernated() async throws {
        try await expectFailure("win10-hibernated", options: WindowsTestGuests.virtioOptions(source: "virtio-win")) { error in
            #expect(error.message.contains("Windows was not shut down cleanly (hibernated or Fast Startup)"))
            #expect(error.message.contains("disable Fast Startup"))
        }
    }

    @Test("win_virtio off: nothing injected, SATA with the reason, no registry change", .inWindowsPhonyRotation("win-virtio-off"))
    func virtioOff() async throws {
        GuestFixTestGuests.configureLibguestfsForTests()
        let scratch = try Scratch()
        var options = ConversionOptions()
        options.winVirtio = false
        options.virtioWin = nil
        let report = try await WindowsTestGuests.fix("win10-bios", options: options, overlay: scratch.file("overlay.qcow2"))
        let windows = try #require(report.windows)
        #expect(windows.diskBus == "sata")
        #expect(windows.diskBusReason.contains("win_virtio is off"))
        // It boots, on SATA and e1000e: the preflight says so as a warning.
        #expect(PreflightVerdict.judge(report: report, failure: nil).outcome == .willBootWithWarnings)
        #expect(windows.nicModel == "e1000e")
        #expect(windows.storageDriver == nil)
        #expect(windows.filesCopied.isEmpty)
        #expect(windows.stagedForFirstBoot.isEmpty)
        #expect(windows.registryChanges.isEmpty)
        #expect(windows.firmware == "bios")
    }
}
