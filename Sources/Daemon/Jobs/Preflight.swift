import Foundation
import Stages

/// `hyper2kvm inspect SOURCE`: the preflight of one file, outside the journal. The same
/// stages a job runs, probe, extract and fix (with `dry_run: true`: the fix on throw-away
/// overlays, then the verdict and the measured size), in a scratch directory that is
/// removed afterwards. No stage after fix runs: nothing is converted or published.
public struct Preflight: Sendable {
    public let options: ConversionOptions
    /// Where the scratch directory is made (the configuration's `workdir`).
    public let workRoot: URL

    public init(options: ConversionOptions, workRoot: URL) {
        var options = options
        options.dryRun = true
        self.options = options
        self.workRoot = workRoot
    }

    /// Runs the preflight of `source`; the report carries the wall-clock and CPU time it took.
    public func run(source: URL, stages: [any PipelineStage] = [ProbeStage(), ExtractStage(), FixStage()]) async throws -> PreflightReport {
        let began = ContinuousClock.now
        let cpuBefore = CPUTime.consumed()
        let kind = try JobIntake.kind(of: source)
        try FileManager.default.createDirectory(at: workRoot, withIntermediateDirectories: true)
        let scratch = workRoot.appendingPathComponent("inspect-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(at: scratch) }

        var recorded: [String: URL] = [:]
        var durations: [GuestFixReport.StepDuration] = []
        for stage in stages {
            let context = StageContext(jobID: 0, source: source, kind: kind, workDirectory: scratch, options: options,
                                       recorded: recorded, outputRoot: scratch)
            if let reason = stage.skipReason(in: context) {
                guard stage.name != .fix else {
                    throw StageError(.badInput, file: source.path, "inspect needs the guest fix, which this configuration skips: \(reason)")
                }
                continue
            }
            let stageBegan = ContinuousClock.now
            let outputs = try await stage.run(in: context)
            recorded.merge(outputs.files) { _, new in new }
            durations.append(.init(step: stage.name.rawValue, seconds: (ContinuousClock.now - stageBegan).seconds))
        }
        guard let file = recorded[PreflightReport.fileName] else {
            throw StageError(.ioFailed, file: source.path, "the fix stage wrote no preflight report")
        }
        var report = try JSONDecoder().decode(PreflightReport.self, from: Data(contentsOf: file))
        // The stage's own steps (fix, measure) replace its total.
        report.durations = durations.filter { $0.step != StageName.fix.rawValue } + report.durations
        report.wallSeconds = (ContinuousClock.now - began).seconds
        report.cpuSeconds = CPUTime.consumed() - cpuBefore
        return report
    }
}

/// CPU seconds (user + system) this process and its waited-for children have used: the
/// appliance's qemu and the guest fixer are children of ours, reaped before a stage ends.
enum CPUTime {
    static func consumed() -> Double {
        var own = rusage()
        var children = rusage()
        getrusage(RUSAGE_SELF.rawValue, &own)
        getrusage(RUSAGE_CHILDREN.rawValue, &children)
        return [own.ru_utime, own.ru_stime, children.ru_utime, children.ru_stime]
            .reduce(0) { $0 + Double($1.tv_sec) + Double($1.tv_usec) / 1e6 }
    }
}
