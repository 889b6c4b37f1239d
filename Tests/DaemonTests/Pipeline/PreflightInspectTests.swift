import Foundation
import Journal
import Stages
import Testing
import TestSupport

/// `hyper2kvm inspect` on the guests of the test matrix, each verdict checked against what a
/// real conversion of the same guest does (the test named in each case), and the time it
/// took printed; and `dry_run: true` in a daemon. One appliance each (minutes under TCG on
/// the loaded 2-core host): a default run inspects one guest (`PreflightRotation`).
@Suite(.serialized, .guestWorkSlot, .tags(.guest), .requiresLibguestfs) struct PreflightInspectTests {
    static var cache: String { RealGuestBooting.cacheDirectory }
    static var bootChain: String { cache + "/bootchain-v2" }
    static var phonyWindows: String { cache + "/phony-windows-v1" }

    struct Inspection {
        let report: PreflightReport
        let status: Int32
        let summary: String
    }

    /// Runs the product's `inspect` (summary on stdout, JSON through --report) and prints the
    /// verdict and the cost, the figures README quotes.
    static func inspect(_ source: String, config: String? = nil, scratch: Scratch) async throws -> Inspection {
        let reportFile = scratch.path("report.json")
        let arguments = [ProductBinary.path, "inspect", "--work-dir", scratch.path("work"), "--report", reportFile]
            + (config.map { ["--config", $0] } ?? []) + [source]
        let started = ContinuousClock.now
        let result = try await sh(arguments, environment: RealGuestTesting.libguestfsEnvironment, allowFailure: true)
        let report = try JSONDecoder().decode(PreflightReport.self, from: Data(contentsOf: URL(fileURLWithPath: reportFile)))
        print("inspect \(source): \(report.verdict.outcome.rawValue) in \(ContinuousClock.now - started) "
              + "(report: wall \(report.wallSeconds ?? -1) s, CPU \(report.cpuSeconds ?? -1) s)\n\(result.out)")
        // Nothing of the disk was copied, and the scratch directory is gone.
        #expect((try? FileManager.default.contentsOfDirectory(atPath: scratch.path("work")))?.isEmpty ?? true)
        return Inspection(report: report, status: result.status, summary: result.out)
    }

    static func expect(_ inspection: Inspection, _ outcome: PreflightVerdict.Outcome, reason: String? = nil,
                       sourceLocation: SourceLocation = #_sourceLocation) {
        let verdict = inspection.report.verdict
        #expect(verdict.outcome == outcome, "\(inspection.summary)", sourceLocation: sourceLocation)
        #expect(inspection.status == (outcome == .willNotBoot ? 3 : 0), "\(inspection.summary)", sourceLocation: sourceLocation)
        #expect(inspection.summary.hasPrefix(inspection.report.vmName + ": " + outcome.rawValue.uppercased()), sourceLocation: sourceLocation)
        if let reason {
            #expect(verdict.reasons.contains { $0.contains(reason) }, "\(verdict.reasons)", sourceLocation: sourceLocation)
        }
        if outcome != .willNotBoot {
            #expect((inspection.report.estimatedOutput?.totalBytes ?? 0) > 0, sourceLocation: sourceLocation)
        }
    }

    // MARK: - Real Debian guests: each boots once converted (RealGuestConversionTests, RealGuestLayoutTests)

    @Test(.inPreflightRotation("inspect-debian12-vmware"))
    func debianVMwareWillBoot() async throws {
        let source = try await RealGuestBooting.cachedGuest("debian12-vmware.vmdk", target: "debian12")
        let run = try await Self.inspect(source, scratch: try Scratch("inspect-debian"))
        Self.expect(run, .willBoot)
        // The fix the real conversion makes: fstab and the kernel command line off /dev/sda1.
        #expect(run.report.fix?.changes.contains { $0.file == "/etc/fstab" } == true)
        #expect(run.report.verdict.passed.contains { $0.contains("virtio_blk") })
    }

    @Test(.inPreflightRotation("inspect-debian12-lvm-uefi"))
    func debianLVMUEFIWillBoot() async throws {
        let source = try await RealGuestBooting.cachedGuest("debian12-lvm-uefi.vmdk", target: "debian12-lvm-uefi")
        let run = try await Self.inspect(source, scratch: try Scratch("inspect-lvm-uefi"))
        Self.expect(run, .willBoot)
        #expect(run.report.fix?.firmware?.firmware == .uefi)
    }

    @Test(.inPreflightRotation("inspect-debian12-btrfs"))
    func debianBtrfsWillBoot() async throws {
        let source = try await RealGuestBooting.cachedGuest("debian12-btrfs.vmdk", target: "debian12-btrfs")
        Self.expect(try await Self.inspect(source, scratch: try Scratch("inspect-btrfs")), .willBoot)
    }

    // MARK: - Phony boot-chain refusals: "converted, boot not ensured" (BootChainPhonyGuestTests)

    static let bootChainBuilt = FileManager.default.fileExists(atPath: bootChain + "/done")

    @Test(.inPreflightRotation("inspect-phony-luks"), .enabled(if: bootChainBuilt, "the phony boot-chain guests are built by BootChainPhonyGuestTests"))
    func luksWillNotBoot() async throws {
        let run = try await Self.inspect(Self.bootChain + "/luks-root.img", scratch: try Scratch("inspect-luks"))
        Self.expect(run, .willNotBoot, reason: "a key is needed")
    }

    @Test(.inPreflightRotation("inspect-phony-md"), .enabled(if: bootChainBuilt, "the phony boot-chain guests are built by BootChainPhonyGuestTests"))
    func mdRAIDWillNotBoot() async throws {
        // BootChainPhonyGuestTests fixes it with a fake initramfs generator and gets "boot not
        // ensured: … md RAID"; the product runs the guest's own update-initramfs, which this
        // phony guest lacks, so a real conversion of it fails in stage fix, and so does the verdict.
        let run = try await Self.inspect(Self.bootChain + "/md-root.img", scratch: try Scratch("inspect-md"))
        Self.expect(run, .willNotBoot, reason: "update-initramfs -u -k 6.1.0-18-amd64 failed inside the guest")
    }

    @Test(.inPreflightRotation("inspect-phony-missing-initramfs"), .enabled(if: bootChainBuilt, "the phony boot-chain guests are built by BootChainPhonyGuestTests"))
    func missingInitramfsWillNotBoot() async throws {
        let run = try await Self.inspect(Self.bootChain + "/missing-initrd.img", scratch: try Scratch("inspect-missing-initrd"))
        Self.expect(run, .willNotBoot, reason: "initrd.img-6.1.0-17-amd64 does not exist")
    }

    // MARK: - A disk with no operating system: the conversion fails (GuestFixPhonyGuestTests)

    @Test(.inPreflightRotation("inspect-blank"))
    func blankDiskWillNotBoot() async throws {
        let scratch = try Scratch("inspect-blank")
        let disk = scratch.path("blank.raw")
        try await sh(["qemu-img", "create", "-q", "-f", "raw", disk, "64M"])
        let run = try await Self.inspect(disk, scratch: scratch)
        Self.expect(run, .willNotBoot, reason: "no operating system found")
        #expect(run.report.fix == nil && run.report.estimatedOutput == nil)
    }

    // MARK: - Phony Windows disks (WindowsGuestFixTests)

    static func windowsConfig(_ scratch: Scratch, virtio: Bool) throws -> String {
        let path = scratch.path("windows.yaml")
        try (virtio ? "win_virtio: true\nvirtio_win: \(phonyWindows)/virtio-win\n" : "win_virtio: false\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func windowsDisk(_ name: String) async throws -> String {
        if !FileManager.default.fileExists(atPath: phonyWindows + "/.complete") {
            try await sh([Repository.script("build-phony-windows")])
        }
        return phonyWindows + "/\(name).img"
    }

    @Test(.inPreflightRotation("inspect-win10-sata"))
    func windowsWithoutVirtioBootsOnSATA() async throws {
        let scratch = try Scratch("inspect-win-sata")
        let run = try await Self.inspect(try await Self.windowsDisk("win10-bios"), config: try Self.windowsConfig(scratch, virtio: false), scratch: scratch)
        Self.expect(run, .willBootWithWarnings, reason: "stay on SATA")
        #expect(run.report.fix?.windows?.diskBus == "sata")
    }

    @Test(.inPreflightRotation("inspect-win10-virtio"))
    func windowsWithVirtioWillBoot() async throws {
        let scratch = try Scratch("inspect-win-virtio")
        let run = try await Self.inspect(try await Self.windowsDisk("win10-bios"), config: try Self.windowsConfig(scratch, virtio: true), scratch: scratch)
        Self.expect(run, .willBoot)
        #expect(run.report.fix?.windows?.storageDriver == "viostor")
    }

    @Test(.inPreflightRotation("inspect-win10-hibernated"))
    func hibernatedWindowsWillNotBoot() async throws {
        let scratch = try Scratch("inspect-win-hibernated")
        let run = try await Self.inspect(try await Self.windowsDisk("win10-hibernated"), config: try Self.windowsConfig(scratch, virtio: true), scratch: scratch)
        Self.expect(run, .willNotBoot, reason: "hibernated or Fast Startup")
    }

    @Test(.inPreflightRotation("inspect-bitlocker"))
    func bitLockerWillNotBoot() async throws {
        let scratch = try Scratch("inspect-bitlocker")
        let run = try await Self.inspect(try await Self.windowsDisk("bitlocker"), config: try Self.windowsConfig(scratch, virtio: true), scratch: scratch)
        Self.expect(run, .willNotBoot, reason: "BitLocker")
    }

    // MARK: - dry_run: true in a daemon

    /// Every run (one phony fix, about a minute): the daemon's preflight writes the report,
    /// journals each stage it skipped and why, publishes no VM and converts nothing.
    @Test func aDryRunDaemonWritesTheReportAndPublishesNothing() async throws {
        let scratch = try Scratch("dry-run-daemon")
        let base = scratch.path("data")
        try FileManager.default.createDirectory(atPath: base + "/queue", withIntermediateDirectories: true)
        let config = scratch.path("daemon.yaml")
        // A phony guest has no libc: its guest tools cannot run (as in GuestFixChildDaemonTests).
        try """
            command: daemon
            file_stable_seconds: 0.5
            dry_run: true
            regen_initramfs: false
            update_grub: false
            verbose: 2
            retry_policy: {enabled: false}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let phony = Self.cache + "/phony-debian.img"
        if !FileManager.default.fileExists(atPath: phony) { try await sh([Repository.script("build-test-guest"), "phony"]) }
        try await sh(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", phony, scratch.path("vm.qcow2")])
        let daemon = try DaemonServiceTests.RunningDaemon(base: base, config: config, environment: RealGuestTesting.libguestfsEnvironment)
        defer { _ = daemon.stop() }
        try FileManager.default.moveItem(atPath: scratch.path("vm.qcow2"), toPath: base + "/queue/vm.qcow2")

        let reportPath = base + "/output/vm.preflight.json"
        #expect(await waitUntil(2400) { !FileManager.default.fileExists(atPath: base + "/queue/vm.qcow2") }, "log:\n\(daemon.output)")
        let report = try JSONDecoder().decode(PreflightReport.self, from: Data(contentsOf: URL(fileURLWithPath: reportPath)))
        print("dry run: \(report.summary)")
        #expect(report.fix?.inspection.type == "linux")
        #expect((report.estimatedOutput?.totalBytes ?? 0) > 0)
        #expect(!FileManager.default.fileExists(atPath: base + "/output/vm"), "a dry run published a VM")

        let journal = try JobJournal.openForReading(stateDirectory: URL(fileURLWithPath: base + "/state"))
        let job = try #require(try journal.allJobs().first)
        let history = try journal.history(job: job.id)
        let skipped = history.filter { $0.to == .stageSkipped && $0.detail?.hasPrefix("dry_run: true") == true }.compactMap(\.stage)
        #expect(skipped == ["v2v", "convert", "emit", "checksum", "publish", "register"], "\(history.map { "\($0.to) \($0.stage ?? "") \($0.detail ?? "")" })")
        let fix = history.last { $0.to == .stageCompleted && $0.stage == "fix" }
        #expect(fix?.detail?.hasPrefix("dry run: \(report.verdict.outcome.rawValue)") == true, "\(String(describing: fix?.detail))")
        let published = history.last { $0.to == .published }
        #expect(published?.detail?.hasPrefix("dry run, nothing converted: \(report.verdict.outcome.rawValue)") == true,
                "\(String(describing: published?.detail))")
        #expect(published?.detail?.hasSuffix("→ " + reportPath) == true)
        // No disk was converted: the work directory is gone and no qcow2 exists under output.
        let outputs = try FileManager.default.contentsOfDirectory(atPath: base + "/output").filter { !$0.hasPrefix(".") }
        #expect(outputs == ["vm.preflight.json"])
        #expect(daemon.stop() == 0, "log:\n\(daemon.output)")
    }
}
