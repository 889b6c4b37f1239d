import Foundation
import Testing
import TestSupport

/// A Windows guest through the daemon with the seed's "Production Configuration" as it is
/// published (only the directories moved into the test's scratch space, and `virtio_win`
/// added): drivers injected, registry changed, and domain.xml set up for Windows.
@Suite(.serialized, .tags(.guest), .requiresLibguestfs) struct WindowsConversionTests {
    static let repositoryRoot = RealGuestTesting.repositoryRoot

    static var phonyWindows: String {
        (ProcessInfo.processInfo.environment["HYPER2KVM_TEST_CACHE"] ?? "/var/cache/hyper2kvm-test") + "/phony-windows-v1"
    }

    @Test func theSeedProductionConfigurationConvertsAWindowsGuest() async throws {
        if !FileManager.default.fileExists(atPath: Self.phonyWindows + "/virtio-win.iso") {
            try await sh([Self.repositoryRoot.appendingPathComponent("scripts/build-phony-windows").path])
        }
        let scratch = try Scratch("windows")
        let base = scratch.path("data")
        try FileManager.default.createDirectory(atPath: base + "/queue", withIntermediateDirectories: true)
        let production = scratch.path("production.yaml")
        try ConfigurationLoaderTests.seedProductionConfiguration.write(toFile: production, atomically: true, encoding: .utf8)
        let local = scratch.path("local.yaml")
        try """
            watch_dir: \(base)/queue
            output_dir: \(base)/output
            workdir: \(base)/work
            state_dir: \(base)/state
            log_file: \(base)/daemon.log
            file_stable_seconds: 1
            retry_policy: {enabled: false}
            virtio_win: \(Self.phonyWindows)/virtio-win.iso

            """.write(toFile: local, atomically: true, encoding: .utf8)
        let environment = RealGuestTesting.libguestfsEnvironment
        let daemon = try DaemonServiceTests.RunningDaemon(base: base, config: production, moreConfigs: [local], environment: environment)
        defer { _ = daemon.stop() }

        let source = scratch.path("win10.img")
        try await sh(["cp", "--sparse=always", Self.phonyWindows + "/win10-bios.img", source])
        let sourceSHA = try await TestDisks.sha256(source)
        try FileManager.default.moveItem(atPath: source, toPath: base + "/queue/win10.img")

        let published = try await RealGuestTesting.awaitPublication(base: base, vm: "win10", queued: "win10.img", seconds: 1800)
        let log = (try? String(contentsOfFile: base + "/daemon.log", encoding: .utf8)) ?? daemon.output
        #expect(FileManager.default.fileExists(atPath: published + "/win10.qcow2"), "log:\n\(log)")
        guard FileManager.default.fileExists(atPath: published + "/win10.qcow2") else { return }

        let xml = try String(contentsOfFile: published + "/domain.xml", encoding: .utf8)
        #expect(xml.contains("<clock offset='localtime'>"))
        #expect(xml.contains("<hyperv mode='custom'>") && xml.contains("<synic state='on'/>"))
        #expect(xml.contains("<target dev='vda' bus='virtio'/>"), "drivers were injected, so the disk is virtio:\n\(xml)")
        #expect(xml.contains("OVMF_CODE_4M.fd"), "vm_uefi: true in the production configuration")
        #expect(xml.contains("<memory unit='MiB'>4096</memory>") && xml.contains("<vcpu placement='static'>2</vcpu>"))
        let check = try await sh(["virt-xml-validate", published + "/domain.xml", "domain"], allowFailure: true)
        #expect(check.status == 0, "\(check.out) \(check.err)")

        let metadata = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: published + "/metadata.json"))) as? [String: Any]
        let windows = try #require(metadata?["windows"] as? [String: Any], "metadata.json has no windows section")
        #expect(windows["disk_bus"] as? String == "virtio")
        #expect(windows["storage_driver"] as? String == "viostor" || windows["storage_driver"] as? String == "vioscsi")
        let changes = (windows["registry_changes"] as? [[String: Any]]) ?? []
        #expect(changes.contains { ($0["key"] as? String)?.hasSuffix("Services\\viostor") == true && $0["value"] as? String == "Start" },
                "registry changes: \(changes)")
        #expect(((windows["files_copied"] as? [String]) ?? []).contains { $0.lowercased().hasSuffix("drivers/viostor.sys") })
        #expect((metadata?["inspection"] as? [String: Any])?["type"] as? String == "windows")

        let processed = try FileManager.default.subpathsOfDirectory(atPath: base + "/queue/.processed")
        let archived = try #require(processed.first { $0.hasSuffix("win10.img") })
        #expect(try await TestDisks.sha256(base + "/queue/.processed/" + archived) == sourceSHA, "the source was modified")
        let sums = try await sh(["sh", "-c", "cd \"$0\" && sha256sum -c SHA256SUMS", published], allowFailure: true)
        #expect(sums.status == 0, "\(sums.out) \(sums.err)")
    }
}
