import Foundation
import Journal
import Testing
import TestSupport

/// `convert --libvirt` against a real libvirtd at qemu:///system (root only): the published
/// VM is defined shut off with virtio disk and NIC where the options say, exactly once
/// whatever is rerun or killed, and a domain the job did not define is never replaced.
@Suite(.serialized, .enabled(if: LibvirtDaemon.canRun, "needs root and /usr/sbin/libvirtd"), .tags(.slow), .notInQuickRun)
struct LibvirtRegistrationTests {
    let scratch: Scratch
    let daemon: LibvirtDaemon
    let vmName: String
    let source: String
    let out: String

    init() async throws {
        scratch = try Scratch("libvirt")
        daemon = try LibvirtDaemon(scratch: scratch)
        vmName = "h2k-test-" + UUID().uuidString.prefix(8).lowercased()
        let raw = scratch.path("base.raw")
        try await TestDisks.makeRaw(at: raw)
        source = scratch.path("vm.vmdk")
        try await TestDisks.convert(raw: raw, to: source, format: "vmdk", options: [])
        out = scratch.path("out")
    }

    var published: String { out + "/" + vmName }

    func convert(_ extra: [String], environment: [String: String] = [:]) async throws -> (status: Int32, out: String, err: String) {
        try await sh([ProductBinary.path, "convert", source, "--output-dir", out, "--no-fix", "--vm-name", vmName] + extra,
               environment: LibvirtDaemon.clientEnvironment.merging(environment) { _, new in new }, allowFailure: true)
    }

    func history() throws -> [TransitionRecord] {
        let journal = try JobJournal.openForReading(stateDirectory: URL(fileURLWithPath: out + "/.hyper2kvm/state"))
        return try journal.allJobs().flatMap { try journal.history(job: $0.id) }
    }

    @Test func definesTheDomainShutOffOnTheNetworkWithThePublishedDisk() async throws {
        let network = "h2k-net-" + UUID().uuidString.prefix(6).lowercased()
        try VirshCLI.makeNetwork(network, scratch: scratch)
        defer { VirshCLI.removeDomain(vmName); VirshCLI.removeNetwork(network) }

        let run = try await convert(["--libvirt", "--libvirt-network", network])
        #expect(run.status == 0, "convert failed: \(run.err)")
        let registration = try RegistrationFile.read(in: published)
        let info = try VirshCLI.dominfo(vmName)
        #expect(info["State"] == "shut off")
        #expect(info["UUID"] == registration.uuid)
        #expect(info["Autostart"] == "disable")
        #expect(info["Persistent"] == "yes")
        #expect(registration.domain == vmName && registration.network == network && registration.bridge == nil)
        #expect(registration.volumes.isEmpty)

        let disks = try VirshCLI.rows(["domblklist", "--domain", vmName, "--details"])
        #expect(disks.count == 1)
        #expect(disks.first == ["file", "disk", "vda", published + "/\(vmName).qcow2"])
        let nics = try VirshCLI.rows(["domiflist", "--domain", vmName])
        #expect(nics.count == 1)
        #expect(Array(nics.first?.dropFirst().prefix(3) ?? []) == ["network", network, "virtio"])
        let xml = try VirshCLI.run(["dumpxml", "--domain", vmName]).out
        #expect(xml.contains("<target dev='vda' bus='virtio'/>"))
        #expect(xml.contains("<driver name='qemu' type='qcow2'"))

        let register = try history().filter { $0.stage == "register" && $0.to == .stageCompleted }
        #expect(register.count == 1)
        #expect(register.first?.detail?.contains("domain '\(vmName)' UUID \(registration.uuid)") == true)

        // The same command again: already published, nothing redefined, still one domain.
        let again = try await convert(["--libvirt", "--libvirt-network", network])
        #expect(again.status == 0, "second convert failed: \(again.err)")
        #expect(try VirshCLI.domainNames().filter { $0 == vmName }.count == 1)
        #expect(try VirshCLI.dominfo(vmName)["UUID"] == registration.uuid)
    }

    @Test func importsTheDiskIntoAPoolAndUsesABridgeWithAutostart() async throws {
        let pool = "h2k-pool-" + UUID().uuidString.prefix(6).lowercased()
        let poolDirectory = scratch.path("pool")
        try VirshCLI.makePool(pool, directory: poolDirectory)
        defer { VirshCLI.removeDomain(vmName); VirshCLI.removePool(pool) }

        let run = try await convert(["--libvirt", "--libvirt-bridge", "br-h2k-test", "--libvirt-pool", pool, "--libvirt-autostart"])
        #expect(run.status == 0, "convert failed: \(run.err)")
        let registration = try RegistrationFile.read(in: published)
        let info = try VirshCLI.dominfo(vmName)
        #expect(info["State"] == "shut off")
        #expect(info["Autostart"] == "enable")
        #expect(info["UUID"] == registration.uuid)

        let volume = try #require(registration.volumes.first)
        #expect(registration.volumes.count == 1)
        #expect(volume.pool == pool && volume.path == poolDirectory + "/" + volume.name)
        #expect(volume.importedFrom == published + "/\(vmName).qcow2")
        #expect(try VirshCLI.volumeNames(pool) == [volume.name])
        let disks = try VirshCLI.rows(["domblklist", "--domain", vmName, "--details"])
        #expect(disks == [["volume", "disk", "vda", volume.name]])
        #expect(try await TestDisks.sha256(volume.path) == TestDisks.sha256(volume.importedFrom), "the volume is not the published disk")
        let format = try VirshCLI.run(["vol-dumpxml", "--pool", pool, "--vol", volume.name]).out
        #expect(format.contains("<format type='qcow2'/>"))

        let nics = try VirshCLI.rows(["domiflist", "--domain", vmName])
        #expect(Array(nics.first?.dropFirst().prefix(3) ?? []) == ["bridge", "br-h2k-test", "virtio"])
        #expect(registration.bridge == "br-h2k-test" && registration.network == nil)
    }

    @Test(arguments: ["register.after-start", "register.outputs-durable"])
    func killedDuringRegistrationThenResumedLeavesOneDomain(point: String) async throws {
        let pool = "h2k-pool-" + UUID().uuidString.prefix(6).lowercased()
        try VirshCLI.makePool(pool, directory: scratch.path("pool"))
        defer { VirshCLI.removeDomain(vmName); VirshCLI.removePool(pool) }
        let options = ["--libvirt", "--libvirt-pool", pool, "--libvirt-bridge", "br-h2k-test"]

        let crashed = try await convert(options, environment: ["HYPER2KVM_CRASH_POINT": point])
        #expect(crashed.status != 0 && crashed.err.contains("crash point \(point)"))
        if point == "register.outputs-durable" {
            // Killed after `virsh define`, before the journal commit: the domain exists already.
            #expect(try VirshCLI.domainNames().contains(vmName))
        }
        let resumed = try await convert(options)
        #expect(resumed.status == 0, "resume after \(point) failed: \(resumed.err)")

        let registration = try RegistrationFile.read(in: published)
        #expect(try VirshCLI.domainNames().filter { $0 == vmName }.count == 1)
        #expect(try VirshCLI.dominfo(vmName)["UUID"] == registration.uuid)
        #expect(try VirshCLI.volumeNames(pool) == registration.volumes.map(\.name))
        let transitions = try history()
        #expect(transitions.filter { $0.stage == "register" && $0.to == .stageCompleted }.count == 1)
        #expect(transitions.filter { $0.to == .published }.count == 1)
    }

    @Test func aForeignDomainOfTheSameNameIsLeftUntouched() async throws {
        let foreignUUID = UUID().uuidString.lowercased()
        let foreignXML = scratch.path("foreign.xml")
        try """
        <domain type='kvm'><name>\(vmName)</name><uuid>\(foreignUUID)</uuid><memory unit='MiB'>64</memory>
        <os><type arch='x86_64' machine='q35'>hvm</type></os>
        <devices><disk type='file' device='disk'><source file='/nonexistent/foreign.qcow2'/><target dev='vda' bus='virtio'/></disk></devices></domain>
        """.write(toFile: foreignXML, atomically: true, encoding: .utf8)
        try VirshCLI.run(["define", "--file", foreignXML])
        defer { VirshCLI.removeDomain(vmName) }
        let foreignBefore = try VirshCLI.run(["dumpxml", "--domain", vmName]).out

        let run = try await convert(["--libvirt"])
        #expect(run.status != 0, "convert must fail when the name is taken")
        #expect(run.err.contains("qemu:///system") && run.err.contains("'\(vmName)'") && run.err.contains("left untouched"),
                "unclear error: \(run.err)")
        #expect(try VirshCLI.run(["dumpxml", "--domain", vmName]).out == foreignBefore)
        #expect(FileManager.default.fileExists(atPath: published + "/\(vmName).qcow2"), "the conversion itself must survive")
        #expect(!FileManager.default.fileExists(atPath: published + "/libvirt.json"))

        // libvirt_overwrite replaces a shut-off foreign definition (the failed job's rerun is a new job).
        let config = scratch.path("overwrite.yaml")
        try "libvirt_overwrite: true\n".write(toFile: config, atomically: true, encoding: .utf8)
        let overwritten = try await convert(["--libvirt", "--config", config])
        #expect(overwritten.status == 0, "overwrite failed: \(overwritten.err)")
        let info = try VirshCLI.dominfo(vmName)
        #expect(info["UUID"] != foreignUUID)
        #expect(try VirshCLI.domainNames().filter { $0 == vmName }.count == 1)
    }
}

/// Without `--libvirt` nothing talks to libvirt: the stage is journaled as skipped.
@Suite(.serialized) struct LibvirtIntegrationOffTests {
    @Test func registerIsSkippedWithItsReason() async throws {
        let scratch = try Scratch("libvirt-off")
        let raw = scratch.path("base.raw")
        try await TestDisks.makeRaw(at: raw)
        let source = scratch.path("vm.vmdk")
        try await TestDisks.convert(raw: raw, to: source, format: "vmdk", options: [])
        let out = scratch.path("out")
        let run = try await sh([ProductBinary.path, "convert", source, "--output-dir", out, "--no-fix",
                          "--libvirt-uri", "qemu+unix:///system?socket=/nonexistent"], allowFailure: true)
        #expect(run.status == 0, "convert failed: \(run.err)")
        let journal = try JobJournal.openForReading(stateDirectory: URL(fileURLWithPath: out + "/.hyper2kvm/state"))
        let rows = try journal.history(job: 1).filter { $0.stage == "register" && $0.to != .published }
        #expect(rows.map(\.to) == [.stageSkipped])
        #expect(rows.first?.detail == "libvirt_integration: false")
        #expect(!FileManager.default.fileExists(atPath: out + "/vm/libvirt.json"))
    }

    @Test func networkAndBridgeFlagsExcludeEachOther() async throws {
        let run = try await sh([ProductBinary.path, "convert", "/nonexistent.vmdk", "--output-dir", "/tmp",
                          "--libvirt", "--libvirt-network", "lan", "--libvirt-bridge", "br0"], allowFailure: true)
        #expect(run.status != 0)
        #expect(run.err.contains("--libvirt-network and --libvirt-bridge are mutually exclusive"))
    }
}
