import Foundation
import Testing
import TestSupport
@testable import Stages

/// The preflight verdict's decisions, on fix reports shaped as the real fixer writes them
/// for each guest of the test matrix (the appliance tests check the real reports agree).
@Suite("Preflight verdict")
struct PreflightVerdictTests {
    static let debian = GuestInspection(type: "linux", distro: "debian", productName: "Debian GNU/Linux 12", majorVersion: 12,
                                        minorVersion: 0, arch: "x86_64", packageFormat: "deb", packageManagement: "apt",
                                        rootDevice: "/dev/sda1", mountpoints: ["/": "/dev/sda1"], hostname: "guest",
                                        osinfo: "debian12", installedKernels: ["6.1.0-17-amd64"])
    static let checked = BootChainCheck(entries: [.init(config: "/boot/grub/grub.cfg", title: "Debian", kernel: "/boot/vmlinuz-6.1.0-17-amd64",
                                                        initramfs: ["/boot/initrd.img-6.1.0-17-amd64"])],
                                        passed: ["root= of the default entry: UUID=1234 is /dev/sda1",
                                                 "/boot/initrd.img-6.1.0-17-amd64 holds virtio_blk virtio_pci (and virtio_scsi)"])
    static let bios = FirmwareDecision(firmware: .bios, decidedBy: "disk", reasons: ["boot code in the MBR"])

    static func windows(bus: String, nic: String) -> WindowsFixReport {
        WindowsFixReport(systemRoot: "/Windows", currentControlSet: "ControlSet001", productVariant: "server", firmware: "bios",
                         diskBus: bus, diskBusReason: bus == "virtio" ? "viostor injected" : "win_virtio is off", nicModel: nic,
                         storageDriver: bus == "virtio" ? "viostor" : nil)
    }

    @Test("a fixed Linux guest whose boot chain resolves will boot, and the passed checks say why")
    func cleanLinux() {
        let report = GuestFixReport(inspection: Self.debian, firmware: Self.bios, bootCheck: Self.checked)
        let verdict = PreflightVerdict.judge(report: report, failure: nil)
        #expect(verdict.outcome == .willBoot && verdict.reasons.isEmpty)
        #expect(verdict.passed.contains("root= of the default entry: UUID=1234 is /dev/sda1"))
        #expect(verdict.passed.contains { $0.hasPrefix("firmware bios (decided by disk: boot code in the MBR") })
    }

    @Test("a fix warning makes it 'will boot with warnings', naming the warning")
    func warnings() {
        let report = GuestFixReport(inspection: Self.debian, warnings: ["/etc/fstab: /dev/sdb1 has no stable name"], bootCheck: Self.checked)
        let verdict = PreflightVerdict.judge(report: report, failure: nil)
        #expect(verdict.outcome == .willBootWithWarnings)
        #expect(verdict.reasons == ["/etc/fstab: /dev/sdb1 has no stable name"])
    }

    @Test("what makes a real job 'converted, boot not ensured' (LUKS, md RAID, a missing initramfs) makes it 'will not boot'",
          arguments: ["the root filesystem is encrypted (LUKS on /dev/sda2): a key is needed",
                      "the root filesystem is on md RAID (/dev/md0)",
                      "boot check: the default entry's initramfs /boot/initrd.img-6.1.0-17-amd64 does not exist"])
    func bootNotEnsured(reason: String) {
        let report = GuestFixReport(inspection: Self.debian, warnings: [reason], bootNotEnsured: [reason])
        #expect(report.bootResult != nil, "the real job's result")
        let verdict = PreflightVerdict.judge(report: report, failure: nil)
        #expect(verdict.outcome == .willNotBoot)
        #expect(verdict.reasons == [reason])
    }

    @Test("what fails a real job (no operating system, no Windows driver) makes it 'will not boot', quoting the error")
    func refused() {
        let verdict = PreflightVerdict.judge(report: nil, failure: "unsupported-guest: /dev/sda: no operating system found")
        #expect(verdict.outcome == .willNotBoot)
        #expect(verdict.reasons == ["a conversion fails: unsupported-guest: /dev/sda: no operating system found"])
    }

    @Test("a Linux report without a boot check (nothing could be read back) is not a plain 'will boot'")
    func unchecked() {
        let verdict = PreflightVerdict.judge(report: GuestFixReport(inspection: Self.debian), failure: nil)
        #expect(verdict.outcome == .willBootWithWarnings)
        #expect(verdict.reasons == ["the boot chain was not checked after the fix"])
    }

    @Test("Windows with viostor and netkvm added will boot; without (win_virtio off) it boots on SATA and e1000e, with warnings")
    func windows() {
        var inspection = Self.debian
        inspection.type = "windows"
        let virtio = PreflightVerdict.judge(report: GuestFixReport(inspection: inspection, windows: Self.windows(bus: "virtio", nic: "virtio")),
                                            failure: nil)
        #expect(virtio.outcome == .willBoot)
        #expect(virtio.passed.contains { $0.contains("viostor") })
        let sata = PreflightVerdict.judge(report: GuestFixReport(inspection: inspection, windows: Self.windows(bus: "sata", nic: "e1000e")),
                                          failure: nil)
        #expect(sata.outcome == .willBootWithWarnings)
        #expect(sata.reasons.count == 2 && sata.reasons[0].contains("stay on SATA (win_virtio is off)"))
    }

    @Test("the emit stage's firmware warning (the source contradicts the disk) is a warning of the verdict")
    func firmwareWarning() {
        let report = GuestFixReport(inspection: Self.debian, firmware: Self.bios, bootCheck: Self.checked)
        let warning = FirmwareChoice.choose(vmUEFI: nil, source: .uefi, disk: Self.bios).warning
        #expect(warning != nil)
        let verdict = PreflightVerdict.judge(report: report, failure: nil, firmwareWarning: warning)
        #expect(verdict.outcome == .willBootWithWarnings && verdict.reasons == [warning].compactMap { $0 })
    }

    @Test("no fix report and no failure (fix_guest: false): nothing is known, said as a warning")
    func notInspected() {
        let verdict = PreflightVerdict.judge(report: nil, failure: nil)
        #expect(verdict.outcome == .willBootWithWarnings && verdict.reasons.first?.contains("fix_guest: false") == true)
    }

    @Test("the report's JSON round-trips, carries the total size, and its summary leads with the verdict")
    func reportForm() throws {
        let report = GuestFixReport(inspection: Self.debian, changes: [.init(area: "fstab", file: "/etc/fstab", before: "/dev/sda1", after: "UUID=1234")],
                                    firmware: Self.bios, bootCheck: Self.checked)
        var preflight = PreflightReport(source: "/q/web01.vmdk", vmName: "web01", verdict: PreflightVerdict.judge(report: report, failure: nil),
                                        fix: report,
                                        estimatedOutput: .init(format: "qcow2", compressed: false,
                                                               disks: [.init(id: "disk0", requiredBytes: 3 << 20, fullyAllocatedBytes: 8 << 30),
                                                                       .init(id: "disk1", requiredBytes: .max, fullyAllocatedBytes: .max)]),
                                        notRun: ["convert …"])
        preflight.wallSeconds = 42
        preflight.cpuSeconds = 7.5
        #expect(preflight.estimatedOutput?.totalBytes == .max, "saturates, never traps")
        let data = try JSONEncoder().encode(preflight)
        #expect(try JSONDecoder().decode(PreflightReport.self, from: data) == preflight)
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"outcome\":\"will boot\"") && text.contains("\"totalBytes\""))
        let summary = preflight.summary
        #expect(summary.hasPrefix("web01: WILL BOOT  (/q/web01.vmdk)"))
        #expect(summary.contains("[fstab] /etc/fstab") && summary.contains("took 42.0 s, 7.5 s of CPU"))
    }

    @Test("dry_run: every stage after fix is skipped with the reason; without it each stage decides as before")
    func dryRunSkipsWhatFollowsTheFix() throws {
        let scratch = try Scratch("dry-run-skip")
        func context(dryRun: Bool) -> StageContext {
            var options = ConversionOptions()
            options.dryRun = dryRun
            return StageContext(jobID: 1, source: scratch.file("vm.vmdk"), kind: .vmdk, workDirectory: scratch.url,
                                options: options, recorded: [:], outputRoot: scratch.url)
        }
        let stages = StandardPipeline.stages(toolVersion: "test", parallelDiskCopies: 1)
        #expect(stages.map(\.name) == StageName.allCases, "the order and the names the journal knows are unchanged")
        for stage in stages {
            let dry = stage.skipReason(in: context(dryRun: true))
            if [.probe, .extract, .fix].contains(stage.name) {
                #expect(dry == stage.skipReason(in: context(dryRun: false)), "\(stage.name) runs in a preflight as in a conversion")
            } else {
                #expect(dry?.hasPrefix("dry_run: true") == true, "\(stage.name): \(String(describing: dry))")
            }
        }
        // Without dry_run the wrapper answers as the stage does (v2v: skipped, use_v2v false).
        let v2v = try #require(stages.first { $0.name == .v2v })
        #expect(v2v.skipReason(in: context(dryRun: false)) == V2VStage().skipReason(in: context(dryRun: false)))
    }

    @Test("which fix errors are the guest's verdict and which fail the preflight itself")
    func verdictErrors() {
        #expect(PreflightStep.isVerdict(StageError(.unsupportedGuest, file: "/dev/sda", "no operating system found")))
        #expect(PreflightStep.isVerdict(StageError(.badInput, file: "/dev/sda1", "BitLocker")))
        #expect(PreflightStep.isVerdict(StageError(.toolFailed, file: "/boot/initrd.img-6.1.0-18-amd64",
                                                   "update-initramfs -u -k 6.1.0-18-amd64 \(StageError.guestToolFailed): No such file")))
        // A crashed appliance, a full disk: nothing to say about the guest, so an error.
        #expect(!PreflightStep.isVerdict(StageError(.toolFailed, file: "/w/o.qcow2", "the guest fixer crashed (signal 6: Aborted)")))
        #expect(!PreflightStep.isVerdict(StageError(.noSpace, file: "/w", "no space left")))
        #expect(!PreflightStep.isVerdict(StageError(.ioFailed, file: "/w", "cannot write")))
    }
}
