import ArgumentParser
import Daemon
import Foundation
import Stages

/// `hyper2kvm inspect SOURCE`: the preflight of one file (README: Preflight).
struct Inspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Say whether SOURCE will boot on KVM once converted, before any byte is copied.",
        discussion: """
            Runs probe, extract and the guest fix on throw-away overlays, measures the output, and prints \
            the verdict (will boot / will boot with warnings / will not boot) with its reasons, what the \
            fix would change and the estimated size. Nothing is converted or published. Exit status: 0 \
            will boot (with or without warnings), 3 will not boot, 1 an error.
            """)

    @Argument(help: "The source: .vmdk .ova .ovf .vmx .vhd .vhdx .raw .img .ami .qcow2, a manifest, or a Hyper-V export folder")
    var source: String
    @Option(name: .customLong("config"), help: "Configuration file(s): the conversion options a real conversion would use.")
    var configFiles: [String] = []
    @Option(name: .customLong("work-dir"), help: "Scratch directory (default: the configuration's workdir, else $TMPDIR).")
    var workDir: String?
    @Option(name: .customLong("report"), help: "Also write the JSON report to this file.")
    var reportFile: String?
    @Flag(help: "Print the JSON report instead of the summary.")
    var json = false

    /// `will not boot` as an exit status, distinct from an error (1) and from ArgumentParser's 64.
    static let willNotBootStatus: Int32 = 3

    func run() async throws {
        let configuration = try ConfigurationLoader.load(files: configFiles)
        let scratchRoot = workDir ?? (configFiles.isEmpty ? NSTemporaryDirectory() : configuration.workDir)
        let preflight = Preflight(options: configuration.conversion, workRoot: URL(fileURLWithPath: scratchRoot))
        let source = URL(fileURLWithPath: self.source).standardizedFileURL
        let task = Task { try await preflight.run(source: source) }
        // Ctrl-C or SIGTERM cancels the run: the fixer's process group is stopped and the
        // scratch directory removed, instead of both being left behind.
        let stopSignals = StopSignals { task.cancel() }
        let report: PreflightReport
        do {
            report = try await task.value
        } catch is CancellationError where stopSignals.received {
            FileHandle.standardError.write(Data("interrupted: nothing was kept\n".utf8))
            throw ExitCode(130)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(report)
        if let reportFile { try data.write(to: URL(fileURLWithPath: reportFile), options: .atomic) }
        print(json ? String(decoding: data, as: UTF8.self) : report.summary)
        if report.verdict.outcome == .willNotBoot { throw ExitCode(Self.willNotBootStatus) }
    }
}
