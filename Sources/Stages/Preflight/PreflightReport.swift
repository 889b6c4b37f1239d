import Foundation

/// What a preflight (`dry_run: true`, `hyper2kvm inspect`) found: the verdict with its
/// reasons, what the fix would change in the guest, the estimated size of the output and
/// what the run cost. Written as JSON (`<output_dir>/<vm>.preflight.json` by the daemon,
/// stdout or `--report` by `inspect`); `summary` is the human form.
public struct PreflightReport: Codable, Sendable, Equatable {
    public static let artifactName = "preflight-report"
    public static let fileName = "preflight.json"

    public var source: String
    public var vmName: String
    public var verdict: PreflightVerdict
    /// The guest fix's report, as a real conversion would record it (nil when the fix refused the guest).
    public var fix: GuestFixReport?
    /// Bytes the converted disks would take, per disk (`qemu-img measure` of the fixed overlays).
    public var estimatedOutput: OutputEstimate?
    /// The stages a real conversion would run next and this run did not, and why.
    public var notRun: [String]
    /// Wall-clock seconds per step ("probe", "extract", "fix", "measure"), in order.
    public var durations: [GuestFixReport.StepDuration]
    /// Wall-clock seconds of the whole preflight, and CPU seconds (user + system, this
    /// process and its children: the appliance's qemu included) when measured on its own.
    public var wallSeconds: Double?
    public var cpuSeconds: Double?

    public init(source: String, vmName: String, verdict: PreflightVerdict, fix: GuestFixReport?,
                estimatedOutput: OutputEstimate?, notRun: [String], durations: [GuestFixReport.StepDuration] = []) {
        self.source = source
        self.vmName = vmName
        self.verdict = verdict
        self.fix = fix
        self.estimatedOutput = estimatedOutput
        self.notRun = notRun
        self.durations = durations
    }

    public struct OutputEstimate: Codable, Sendable, Equatable {
        public struct Disk: Codable, Sendable, Equatable {
            public var id: String
            /// What the copy writes (allocated data plus the format's metadata).
            public var requiredBytes: UInt64
            /// With every cluster allocated (the disk full).
            public var fullyAllocatedBytes: UInt64
            public init(id: String, requiredBytes: UInt64, fullyAllocatedBytes: UInt64) {
                self.id = id
                self.requiredBytes = requiredBytes
                self.fullyAllocatedBytes = fullyAllocatedBytes
            }
        }
        public var format: String
        public var compressed: Bool
        public var disks: [Disk]
        /// The disks' `requiredBytes` summed (saturating).
        public var totalBytes: UInt64

        public init(format: String, compressed: Bool, disks: [Disk]) {
            self.format = format
            self.compressed = compressed
            self.disks = disks
            self.totalBytes = disks.reduce(0) { $0.saturatingAdd($1.requiredBytes) }
        }
    }

    /// The human form: verdict first, then why, what would change, size and cost.
    public var summary: String {
        var lines = ["\(vmName): \(verdict.outcome.rawValue.uppercased())  (\(source))"]
        for reason in verdict.reasons { lines.append("  ! \(reason)") }
        for passed in verdict.passed { lines.append("  ok \(passed)") }
        if let fix {
            let guest = fix.inspection
            lines.append("guest: \(guest.type) \(guest.distro) \(guest.majorVersion).\(guest.minorVersion) (\(guest.arch)), root \(guest.rootDevice)")
            lines.append("would change \(fix.changes.count) file(s):")
            for change in fix.changes { lines.append("  [\(change.area)] \(change.file)") }
            if let windows = fix.windows {
                lines.append("  Windows: \(windows.registryChanges.count) registry change(s), \(windows.filesCopied.count) file(s) copied, disk bus \(windows.diskBus), NIC \(windows.nicModel)")
            }
            for skipped in fix.skipped { lines.append("  skipped \(skipped.area): \(skipped.reason)") }
        }
        if let estimate = estimatedOutput {
            let disks = estimate.disks.map { "\($0.id) \(Self.mebibytes($0.requiredBytes))" }.joined(separator: ", ")
            lines.append("estimated output: \(Self.mebibytes(estimate.totalBytes)) \(estimate.format)\(estimate.compressed ? " (zstd)" : "") [\(disks)]")
        }
        if !notRun.isEmpty { lines.append("not run: " + notRun.joined(separator: "; ")) }
        let steps = durations.map { "\($0.step) \(String(format: "%.1f", $0.seconds)) s" }.joined(separator: ", ")
        var cost = [wallSeconds.map { "\(String(format: "%.1f", $0)) s" }, cpuSeconds.map { "\(String(format: "%.1f", $0)) s of CPU" }]
            .compactMap { $0 }.joined(separator: ", ")
        if !steps.isEmpty { cost += cost.isEmpty ? steps : " (\(steps))" }
        lines.append("took " + (cost.isEmpty ? "?" : cost) + "; no copy of the disk was made")
        return lines.joined(separator: "\n")
    }

    static func mebibytes(_ bytes: UInt64) -> String { "\(bytes / (1 << 20)) MiB" }
}
