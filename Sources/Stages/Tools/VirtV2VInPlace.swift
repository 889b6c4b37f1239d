import Foundation
import Synchronization

/// `virt-v2v-in-place` (Debian package virt-v2v): virt-v2v's guest conversion, applied to
/// disks it is given instead of to a copy it makes. `use_v2v: true` runs it on the job's
/// qcow2 overlays (stage `v2v`), so the source is read only through our pinned descriptors
/// and the copy stays ours (`convert`); see `V2VStage` for why not plain `virt-v2v`.
public struct VirtV2VInPlace: Sendable {
    public static let toolName = "virt-v2v-in-place"
    /// What `use_v2v: true` needs besides the tool: virt-v2v serves the disks through nbdkit
    /// and qemu-nbd, and Debian 12's package does not depend on nbdkit.
    public static let helpers = ["nbdkit", "qemu-nbd"]
    public static let installHint = "apt-get install virt-v2v nbdkit libnbd-bin qemu-utils"

    public var executable: String

    public init(executable: String) {
        self.executable = executable
    }

    /// The tool and its helpers on `PATH`, or what is missing.
    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment) -> Result<VirtV2VInPlace, Missing> {
        let directories = (environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":").map(String.init)
        func find(_ name: String) -> String? {
            directories.map { $0 + "/" + name }.first { FileManager.default.isExecutableFile(atPath: $0) }
        }
        let missing = ([toolName] + helpers).filter { find($0) == nil }
        guard missing.isEmpty, let tool = find(toolName) else { return .failure(Missing(programs: missing)) }
        return .success(VirtV2VInPlace(executable: tool))
    }

    public struct Missing: Error, CustomStringConvertible {
        public var programs: [String]
        public var description: String {
            "use_v2v: true needs \(programs.joined(separator: ", ")), not found in PATH (Debian: \(VirtV2VInPlace.installHint))"
        }
    }

    /// `virt-v2v-in-place 2.2.0` → `2.2.0`.
    public func version() async throws -> String {
        let result = try await ExternalCommand(executable, ["--version"],
                                               limits: .shortTool(.seconds(60), because: "--version only prints a line"))
            .runChecked()
        let words = result.stdoutText.split(whereSeparator: \.isWhitespace)
        return words.last.map(String.init) ?? "unknown"
    }

    /// Converts the guest whose disks `domainXML` lists, writing into those disks.
    /// `progress` gets 0…1 from the phases virt-v2v announces on stdout. Its own error
    /// lines are quoted verbatim in the thrown `StageError`.
    ///
    /// - Parameter supervisor: the `hyper2kvm` executable, whose `internal supervise` runs the
    ///   tool so that it dies with the daemon (`Supervisor`).
    public func convert(domainXML: URL, about file: String, environment: [String: String], supervisor: String,
                        progress: @escaping @Sendable (Double) -> Void) async throws -> Transcript {
        let phases = PhaseProgress(report: progress)
        let command = ExternalCommand(supervisor, ["internal", "supervise", "--", executable, "-i", "libvirtxml", domainXML.path],
                                      limits: Self.limits, environment: environment)
        let result = try await command.run(about: file) { phases.consume($0) }
        try Task.checkCancellation()
        let transcript = Transcript(stdout: result.stdoutText, stderr: result.stderrText)
        switch result.termination {
        case .exited(0):
            return transcript
        case .exited(let code):
            throw StageError(.toolFailed, file: file, "\(Self.toolName) failed (exit status \(code)): " + transcript.errorText)
        case .signaled(let signal):
            throw StageError(.toolFailed, file: file, "\(Self.toolName) was killed by signal \(signal) "
                                 + "(\(ExternalCommand.Termination.name(of: signal))): " + transcript.errorText)
        }
    }

    /// What virt-v2v printed, for the stage's detail and its errors.
    public struct Transcript: Sendable, Equatable {
        public var stdout: String
        public var stderr: String

        /// virt-v2v's own `…: error: …` lines verbatim, else the last lines of its stderr.
        public var errorText: String {
            let lines = stderr.split(separator: "\n").map(String.init)
            let errors = lines.filter { $0.contains(": error: ") }
            let chosen = errors.isEmpty ? Array(lines.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }.suffix(5)) : errors
            return chosen.isEmpty ? "(it printed nothing on stderr)" : chosen.joined(separator: "\n")
        }

        /// virt-v2v's warnings, verbatim (kept in the stage detail and v2v-report.json).
        public var warnings: [String] {
            (stdout + "\n" + stderr).split(separator: "\n").map(String.init).filter { $0.contains(": warning: ") }
        }
    }

    /// A wall clock only: the conversion runs the guest's initramfs and boot-loader tools in
    /// an appliance, minutes even under emulation (2.5 min for a small Debian on TCG here).
    static let limits = ExternalCommand.Limits(
        wallClock: .init(.seconds(2 * 3600), blame: .toolFailed,
                         because: "a virt-v2v conversion takes minutes even under emulation, so it hung"))
}

/// virt-v2v's phase lines (`[  48.7] Inspecting the source`) as a fraction of the run.
/// The weights are where each phase began in runs on this project's test guests.
final class PhaseProgress: Sendable {
    static let phases: [(prefix: String, fraction: Double)] = [
        ("Setting up the source", 0.02), ("Opening the source", 0.05), ("Inspecting the source", 0.35),
        ("Checking for sufficient free disk space", 0.55), ("Converting", 0.6),
        ("Mapping filesystem data", 0.9), ("Closing the overlay", 0.95), ("Finishing off", 0.98),
    ]
    static let longestLine = 64 * 1024
    private let report: @Sendable (Double) -> Void
    private let pending = Mutex(Data())

    init(report: @escaping @Sendable (Double) -> Void) {
        self.report = report
    }

    func consume(_ chunk: Data) {
        let lines: [String] = pending.withLock { buffer in
            buffer.append(chunk)
            guard let last = buffer.lastIndex(of: UInt8(ascii: "\n")) else {
                // A phase line is short; a longer run without a newline is not one (and must
                // not grow without bound).
                if buffer.count > Self.longestLine { buffer.removeAll() }
                return []
            }
            let complete = buffer[buffer.startIndex...last]
            buffer = Data(buffer[buffer.index(after: last)...])
            return String(decoding: complete, as: UTF8.self).split(separator: "\n").map(String.init)
        }
        for line in lines {
            if let fraction = Self.fraction(of: line) { report(fraction) }
        }
    }

    static func fraction(of line: String) -> Double? {
        guard let close = line.firstIndex(of: "]"), line.hasPrefix("[") else { return nil }
        let message = line[line.index(after: close)...].trimmingCharacters(in: .whitespaces)
        return phases.first { message.hasPrefix($0.prefix) }?.fraction
    }
}
