import Foundation
import Testing
import TestSupport

/// What the layout and network-identity boot tests share: the cached test guests, the
/// one-shot conversion, and booting a disk under scripts/boot-test the way its domain.xml
/// says (firmware, NIC MAC).
enum RealGuestBooting {
    static var cacheDirectory: String { ProcessInfo.processInfo.environment["HYPER2KVM_TEST_CACHE"] ?? "/var/cache/hyper2kvm-test" }
    static var bootTest: String { Repository.script("boot-test") }

    /// The cached guest `file`, built by scripts/build-test-guest `target` when missing.
    static func cachedGuest(_ file: String, target: String) async throws -> String {
        let path = cacheDirectory + "/" + file
        if !FileManager.default.fileExists(atPath: path) {
            let start = Date()
            try await sh([Repository.script("build-test-guest"), target])
            print("\(target): built in \(String(format: "%.0f", Date().timeIntervalSince(start))) s (cached from now on)")
        }
        return path
    }

    /// What domain.xml asks of the host: the firmware and the first NIC's MAC.
    struct Domain {
        let uefi: Bool
        let mac: String?

        init(xml: String) {
            uefi = xml.contains("<loader")
            // DomainXMLWriter quotes attributes with ' (libvirt writes either).
            mac = xml.range(of: #"<mac address=['"][0-9a-f:]{17}['"]"#, options: .regularExpression)
                .map { String(xml[$0].dropFirst("<mac address='".count).dropLast()) }
        }
    }

    struct Conversion {
        let directory: String
        let disk: String
        let domain: Domain
        let log: String
        let seconds: Double
    }

    struct ConversionFailed: Error, CustomStringConvertible {
        let description: String
    }

    /// `hyper2kvm convert` with guest fixes on (the default). Its failure is returned, not
    /// thrown, so the caller can check other things (the unconverted boot) before it counts.
    static func convert(_ source: String, name: String, scratch: Scratch) async -> Result<Conversion, Error> {
        do {
            let out = scratch.path("out-\(name)")
            let start = Date()
            let run = try await sh([ProductBinary.path, "convert", source, "--output-dir", out, "--vm-name", name],
                                   environment: RealGuestTesting.libguestfsEnvironment, allowFailure: true)
            let seconds = Date().timeIntervalSince(start)
            let log = run.out + run.err
            guard run.status == 0 else { throw ConversionFailed(description: "\(name): convert exited \(run.status):\n\(log.suffix(4000))") }
            let directory = out + "/" + name
            let disks = (try? FileManager.default.contentsOfDirectory(atPath: directory))?.filter { $0.hasSuffix(".qcow2") } ?? []
            guard disks.count == 1, let disk = disks.first else {
                throw ConversionFailed(description: "\(name): expected one qcow2 in \(directory), found \(disks)")
            }
            let xml = try String(contentsOfFile: directory + "/domain.xml", encoding: .utf8)
            return .success(Conversion(directory: directory, disk: directory + "/" + disk, domain: Domain(xml: xml), log: log, seconds: seconds))
        } catch {
            return .failure(error)
        }
    }

    /// Boots `disk` on virtio under scripts/boot-test in the background.
    static func startBoot(_ disk: String, format: String, uefi: Bool, mac: String?, timeout: Int,
                          fwCfg: String? = nil, outputDirectory: String) throws -> BackgroundCommand {
        var environment = ["BOOT_TEST_TIMEOUT": String(timeout), "BOOT_TEST_FIRMWARE": uefi ? "uefi" : "bios"]
        if let mac { environment["BOOT_TEST_MAC"] = mac }
        if let fwCfg { environment["BOOT_TEST_FW_CFG"] = fwCfg }
        return try BackgroundCommand.start([bootTest, disk, format], environment: environment, outputDirectory: outputDirectory)
    }

    /// The `HYPER2KVM-<kind> …` line boot-test passed on from the guest's console.
    static func markerLine(_ kind: String, in output: String) -> String? {
        output.split(separator: "\n").map(String.init).first { $0.hasPrefix("HYPER2KVM-\(kind) ") }
    }
}

/// The boot tests boot what domain.xml says: read from the XML the product writes.
@Suite struct RealGuestBootingDomainTests {
    @Test func firmwareAndMACAreReadFromDomainXML() {
        let bios = RealGuestBooting.Domain(xml: """
            <os><type arch='x86_64' machine='q35'>hvm</type></os>
            <interface type='network'><mac address='00:50:56:aa:bb:cc'/><source network='default'/></interface>
            """)
        #expect(!bios.uefi)
        #expect(bios.mac == "00:50:56:aa:bb:cc")
        let uefi = RealGuestBooting.Domain(xml: """
            <os><type arch='x86_64' machine='q35'>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader></os>
            <interface type="network"><source network="default"/></interface>
            """)
        #expect(uefi.uefi)
        #expect(uefi.mac == nil)
    }
}
