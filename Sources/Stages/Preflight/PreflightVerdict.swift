/// Whether a guest will boot on KVM once converted, judged from the same guest fix report a
/// real conversion produces (`GuestFixReport`: its boot chain check, its "boot not
/// ensured" reasons, its warnings, its Windows disk bus) or from the error that would fail
/// the real job. No rule of its own: what makes a real job end "converted, boot not
/// ensured" or fail makes the verdict "will not boot", so the two cannot disagree.
public struct PreflightVerdict: Codable, Sendable, Equatable {
    public enum Outcome: String, Codable, Sendable, CaseIterable {
        case willBoot = "will boot"
        case willBootWithWarnings = "will boot with warnings"
        case willNotBoot = "will not boot"
    }

    public var outcome: Outcome
    /// Why not "will boot": each boot-not-ensured reason, the job's error, or each warning.
    public var reasons: [String]
    /// What was checked and holds (the boot chain's passed checks, the firmware, the disk bus).
    public var passed: [String]

    public init(outcome: Outcome, reasons: [String], passed: [String]) {
        self.outcome = outcome
        self.reasons = reasons
        self.passed = passed
    }

    /// The verdict on a guest the fix handled (`report`) or refused (`failure`: the
    /// message the real job would fail with, e.g. no operating system, no Windows driver).
    /// `firmwareWarning`: what `FirmwareChoice` (the emit stage's decision) warns about.
    public static func judge(report: GuestFixReport?, failure: String?, firmwareWarning: String? = nil) -> PreflightVerdict {
        if let failure {
            return PreflightVerdict(outcome: .willNotBoot, reasons: ["a conversion fails: " + failure], passed: [])
        }
        guard let report else {
            return PreflightVerdict(outcome: .willBootWithWarnings,
                                    reasons: ["the guest was not fixed or inspected (fix_guest: false): nothing is known about its boot"],
                                    passed: [])
        }
        let passed = Self.passed(in: report)
        let notEnsured = report.bootNotEnsuredReasons
        if !notEnsured.isEmpty {
            return PreflightVerdict(outcome: .willNotBoot, reasons: notEnsured, passed: passed)
        }
        var doubts: [String] = []
        if let windows = report.windows {
            // A Windows guest without a boot-start virtio driver keeps SATA and e1000e: it
            // boots, on emulated hardware, which the operator must know.
            if windows.diskBus != "virtio" { doubts.append("Windows: no virtio storage driver added, the disks stay on SATA (\(windows.diskBusReason))") }
            if windows.nicModel != "virtio" { doubts.append("Windows: the NIC stays an emulated e1000e") }
        } else if report.inspection.type == "linux", report.bootCheck == nil {
            doubts.append("the boot chain was not checked after the fix")
        }
        doubts += report.warnings + (firmwareWarning.map { [$0] } ?? [])
        return PreflightVerdict(outcome: doubts.isEmpty ? .willBoot : .willBootWithWarnings, reasons: doubts, passed: passed)
    }

    static func passed(in report: GuestFixReport) -> [String] {
        var passed = report.bootCheck?.passed ?? []
        if let firmware = report.firmware {
            passed.append("firmware \(firmware.firmware.rawValue) (decided by \(firmware.decidedBy): \(firmware.reasons.joined(separator: ", ")))")
        }
        if let windows = report.windows, windows.diskBus == "virtio" {
            passed.append("Windows: boot-start storage driver \(windows.storageDriver ?? "virtio") added (\(windows.diskBusReason))")
        }
        return passed
    }
}
