import TestSupport
import Foundation
import Testing
@testable import GuestFix
@testable import Stages

/// The logic that needs no appliance: which virtio-win directories fit which Windows, how a
/// tree is read (directory or ISO), registry value encoding, the first-boot script.
@Suite("Windows driver choice")
struct WindowsDriverChoiceTests {
    static func release(_ major: Int, _ minor: Int, build: Int? = nil, _ product: String = "Windows", server: Bool = false,
                        arch: String = "x86_64") -> WindowsRelease {
        WindowsRelease(majorVersion: major, minorVersion: minor, build: build, productName: product,
                       productVariant: server ? "server" : "client", arch: arch)
    }

    @Test("each Windows version maps to its virtio-win directory", arguments: [
        (release(6, 0, "Windows Vista Business"), ["2k8"]),
        (release(6, 1, "Windows 7 Professional"), ["w7"]),
        (release(6, 1, "Windows Server 2008 R2 Standard", server: true), ["2k8R2"]),
        (release(6, 2, "Windows 8 Pro"), ["w8"]),
        (release(6, 2, "Windows Server 2012 Standard", server: true), ["2k12"]),
        (release(6, 3, "Windows 8.1 Pro"), ["w8.1"]),
        (release(6, 3, "Windows Server 2012 R2 Datacenter", server: true), ["2k12R2"]),
        (release(10, 0, build: 19045, "Windows 10 Pro"), ["w10"]),
        (release(10, 0, build: 22631, "Windows 10 Pro"), ["w11", "w10"]),
        (release(10, 0, "Windows 11 Enterprise"), ["w11", "w10"]),
        (release(10, 0, build: 14393, "Windows Server 2016 Standard", server: true), ["2k16"]),
        (release(10, 0, build: 17763, "Windows Server 2019 Standard", server: true), ["2k19"]),
        (release(10, 0, build: 20348, "Windows Server 2022 Datacenter", server: true), ["2k22"]),
        (release(10, 0, build: 26100, "Windows Server 2025 Standard", server: true), ["2k25", "2k22"]),
        (release(10, 0, "Windows Server 2019 Datacenter", server: true), ["2k19"]),
        // No InstallationType in old hives: the product name still says Server.
        (WindowsRelease(majorVersion: 6, minorVersion: 1, build: 7601, productName: "Windows Server 2008 R2 Standard",
                        productVariant: "unknown", arch: "x86_64"), ["2k8R2"]),
        (release(4, 0, "Windows NT"), []),
    ])
    func versionDirectories(release: WindowsRelease, expected: [String]) {
        #expect(release.virtioWinDirectories == expected)
    }

    @Test("architectures and the boot-driver mechanism")
    func archAndDatabase() {
        #expect(Self.release(10, 0).virtioWinArch == "amd64")
        #expect(Self.release(6, 1, arch: "i386").virtioWinArch == "x86")
        #expect(Self.release(10, 0, arch: "aarch64").virtioWinArch == "ARM64")
        #expect(Self.release(10, 0, arch: "ppc64le").virtioWinArch == nil)
        #expect(!Self.release(6, 1).usesDriverDatabase)
        #expect(Self.release(6, 2).usesDriverDatabase)
        #expect(Self.release(10, 0).usesDriverDatabase)
    }

    static let tree: [String] = ["viostor", "vioscsi", "NetKVM", "Balloon", "vioserial", "viorng"].flatMap { driver in
        ["w10", "2k8R2", "w7"].flatMap { os in
            ["amd64", "x86"].flatMap { arch in
                ["sys", "inf", "cat"].map { ext in
                    let base = driver == "vioserial" ? "vioser" : driver.lowercased()
                    return "\(driver)/\(os)/\(arch)/\(base).\(ext)"
                }
            }
        }
    } + ["virtio-win_license.txt"]

    @Test("the drivers for the guest's version and arch are chosen, names matched case-insensitively")
    func selection() throws {
        let drivers = try VirtioWinDriverSelection.select(for: Self.release(10, 0, build: 19045, "Windows 10 Pro"),
                                                          in: Self.tree, source: "/srv/virtio-win")
        #expect(drivers.map(\.name) == ["viostor", "vioscsi", "netkvm", "balloon", "vioser", "viorng"])
        #expect(drivers[0].directory == "viostor/w10/amd64")
        #expect(drivers[0].files == ["viostor/w10/amd64/viostor.cat", "viostor/w10/amd64/viostor.inf", "viostor/w10/amd64/viostor.sys"])
        #expect(drivers[0].file(withExtension: "sys") == "viostor/w10/amd64/viostor.sys")
        #expect(drivers[2].directory == "NetKVM/w10/amd64")

        let old = try VirtioWinDriverSelection.select(for: Self.release(6, 1, "Windows 7", arch: "i386"), in: Self.tree, source: "x")
        #expect(old[0].directory == "viostor/w7/x86")

        // Windows 11 uses the w10 build when the tree has no w11 directory.
        let eleven = try VirtioWinDriverSelection.select(for: Self.release(10, 0, build: 22631), in: Self.tree, source: "x")
        #expect(eleven[0].directory == "viostor/w10/amd64")
    }

    @Test("a tree without drivers for the guest's version names what was looked for and where")
    func wrongVersion() {
        let onlyW7 = Self.tree.filter { $0.contains("/w7/") }
        let error = #expect(throws: StageError.self) {
            try VirtioWinDriverSelection.select(for: Self.release(10, 0, build: 19045, "Windows 10 Pro"), in: onlyW7, source: "/srv/virtio-win")
        }
        #expect(error?.file == "/srv/virtio-win")
        #expect(error?.message.contains("viostor/w10/amd64/viostor.sys") == true)
        #expect(error?.message.contains("Windows 10 Pro (10.0 build 19045, x86_64)") == true)
        #expect(error?.message.contains("only for w7/amd64, w7/x86") == true)
        #expect(error?.message.contains("win_virtio: false") == true)

        let empty = #expect(throws: StageError.self) {
            try VirtioWinDriverSelection.select(for: Self.release(6, 1), in: ["README"], source: "/d")
        }
        #expect(empty?.message.contains("no viostor driver at all") == true)

        let arm = #expect(throws: StageError.self) {
            try VirtioWinDriverSelection.select(for: Self.release(10, 0, arch: "ppc64le"), in: Self.tree, source: "/d")
        }
        #expect(arm?.message.contains("ppc64le") == true)
    }

    @Test("win_virtio without virtio_win names the key and the environment variable")
    func missingSource() {
        var options = ConversionOptions()
        options.winVirtio = true
        let error = #expect(throws: StageError.self) {
            try WindowsGuestFixer.virtioWinLocation(options: options, release: Self.release(10, 0, "Windows 10 Pro"), disk: "/job/disk.qcow2")
        }
        #expect(error?.message.contains("virtio_win") == true)
        #expect(error?.message.contains("VIRTIO_WIN") == true)
        #expect(error?.file == "/job/disk.qcow2")
        options.virtioWin = "/srv/virtio-win.iso"
        #expect((try? WindowsGuestFixer.virtioWinLocation(options: options, release: Self.release(10, 0), disk: nil)) == "/srv/virtio-win.iso")
    }

    @Test("a virtio-win source that does not exist is a clear error")
    func missingTree() {
        let error = #expect(throws: StageError.self) { try VirtioWinDriverSource(path: "/nonexistent/virtio-win") }
        #expect(error?.message.contains("virtio_win") == true)
    }

    @Test("ISO images (Joliet, Rock Ridge, plain) list and read the same files as the directory")
    func isoReader() async throws {
        let scratch = try Scratch()
        let root = scratch.file("tree")
        let files = ["viostor/w10/amd64/viostor.sys", "viostor/w10/amd64/viostor.inf", "NetKVM/w8.1/x86/netkvm.sys",
                     "Balloon/2k8R2/amd64/balloon.cat", "top.txt"]
        for (index, file) in files.enumerated() {
            let url = root.appendingPathComponent(file)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(repeating: UInt8(index + 65), count: 3000 + index).write(to: url)
        }
        let directory = try VirtioWinDriverSource(path: root.path)
        #expect(directory.kind == .directory)
        #expect(directory.files == files.sorted())

        for (name, flags) in [("joliet", ["-J", "-R"]), ("rockridge", ["-R"]), ("joliet-only", ["-J"])] {
            let iso = scratch.file("\(name).iso")
            _ = try await ExternalCommand("genisoimage", ["-quiet"] + flags + ["-V", "test", "-o", iso.path, root.path]).runChecked()
            let source = try VirtioWinDriverSource(path: iso.path)
            #expect(source.kind == .iso)
            #expect(source.files.sorted() == files.sorted(), "\(name)")
            let extracted = try source.hostFile(for: "NetKVM/w8.1/x86/netkvm.sys", scratch: scratch.url)
            #expect(try Data(contentsOf: extracted) == Data(repeating: 67, count: 3002), "\(name)")
        }

        let notISO = scratch.file("not.iso")
        try Data(repeating: 0, count: 80_000).write(to: notISO)
        let error = #expect(throws: StageError.self) { try VirtioWinDriverSource(path: notISO.path) }
        #expect(error?.message.contains("not an ISO 9660 image") == true)
    }

    @Test("registry values encode as Windows stores them and render as .reg text")
    func registryValues() {
        #expect(RegistryValue.dword(1).data == [1, 0, 0, 0])
        #expect(RegistryValue.string("ab").data == [0x61, 0, 0x62, 0, 0, 0])
        #expect(RegistryValue.multiString(["a", "b"]).data == [0x61, 0, 0, 0, 0x62, 0, 0, 0, 0, 0])
        for value in [RegistryValue.dword(0xDEADBEEF), .string("SCSI miniport"), .expandString("system32\\drivers\\viostor.sys"),
                      .multiString(["vmmouse", "mouclass"]), .multiString([]), .binary([1, 0xFF, 0, 0]), .string("")] {
            #expect(RegistryValue(type: value.type, data: value.data) == value)
        }
        #expect(RegistryValue.dword(4).regText == "dword:00000004")
        #expect(RegistryValue.string("a\\b").regText == "\"a\\\\b\"")
        #expect(RegistryValue.expandString("x").regText == "hex(2):78,00,00,00 ; \"x\"")
        #expect(RegistryValue(type: 4, data: [1, 2]) == .other(type: 4, data: [1, 2]))
    }

    @Test("VMware Tools uninstall commands come from MSI product codes")
    func vmwareUninstall() {
        #expect(VMwareToolsRemoval.msiProductCode("{E2C3A8AA-8B33-4B0E-9F26-1D0D2E3B9A01}") == "{E2C3A8AA-8B33-4B0E-9F26-1D0D2E3B9A01}")
        #expect(VMwareToolsRemoval.msiProductCode("VMware Tools") == nil)
        #expect(VMwareToolsRemoval.msiProductCode(fromCommand: "MsiExec.exe /I{E2C3A8AA-8B33-4B0E-9F26-1D0D2E3B9A01}")
            == "{E2C3A8AA-8B33-4B0E-9F26-1D0D2E3B9A01}")
        #expect(VMwareToolsRemoval.msiProductCode(fromCommand: "C:\\uninstall.exe {x}") == nil)
    }

    @Test("the first-boot script installs every staged INF and runs the uninstallers")
    func firstBootScript() {
        let script = WindowsFirstBoot(installDrivers: true, uninstallCommands: ["msiexec.exe /x {A} /qn /norestart"]).script
        #expect(script.hasPrefix("@echo off\r\n"))
        #expect(script.contains("for /r \"%H2K%\" %%f in (*.inf) do pnputil -i -a \"%%f\""))
        #expect(script.contains("msiexec.exe /x {A} /qn /norestart >> "))
        #expect(!script.replacingOccurrences(of: "\r\n", with: "").contains("\n"))
        #expect(!WindowsFirstBoot(installDrivers: false, uninstallCommands: []).isNeeded)
        #expect(WindowsFirstBoot.runOnceCommand == .expandString("cmd.exe /c \"%SystemRoot%\\Drivers\\VirtIO\\hyper2kvm-firstboot.cmd\""))
    }
}
