import Foundation

/// Runs the guest fix (the GuestFix module's `LinuxGuestFixer`, which hands a Windows guest
/// to `WindowsGuestFixer`) in a child process: the `hyper2kvm-fix-guest` executable installed
/// beside `hyper2kvm`. libguestfs is C code that can abort or crash, and a fix runs guest
/// tools (update-initramfs, grub) for minutes that nothing inside the process can
/// interrupt; in a child, a crash fails one stage, and a cancellation (a shutdown) stops
/// the fix within `ExternalCommand`'s grace by tearing down the child's process group,
/// which holds the appliance's qemu too. Only that executable links libguestfs: the daemon
/// and the CLI never call it, so they never map the library.
///
/// The request (overlays and options) goes in a file and the report comes back in a file:
/// a report can be large, and stdout and stderr belong to libguestfs and qemu (stderr is
/// capped by `ExternalCommand`).
public struct IsolatedGuestFixer: Sendable {
    /// The `hyper2kvm-fix-guest` executable.
    public var executable: String
    /// Added to the child's environment (tests arm `GuestFixTestHook` with it).
    var extraEnvironment: [String: String]

    public init(executable: String) {
        self.init(executable: executable, extraEnvironment: [:])
    }

    init(executable: String, extraEnvironment: [String: String]) {
        self.executable = executable
        self.extraEnvironment = extraEnvironment
    }

    /// The executable's name, as the package builds it and `scripts/install` installs it.
    public static let productName = "hyper2kvm-fix-guest"
    /// Overrides where the executable is looked for (tests, a build run from elsewhere).
    public static let executableVariable = "HYPER2KVM_FIX_GUEST_EXECUTABLE"

    /// Finds `hyper2kvm-fix-guest` (`CompanionExecutable`): `HYPER2KVM_FIX_GUEST_EXECUTABLE`
    /// when set, else beside our own program.
    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> IsolatedGuestFixer {
        IsolatedGuestFixer(executable: try executablePath(environment: environment, ownExecutable: CompanionExecutable.ownExecutable))
    }

    /// `locate`'s decision, given our own program's path.
    static func executablePath(environment: [String: String], ownExecutable: URL) throws -> String {
        try CompanionExecutable(name: productName, variable: executableVariable, purpose: "fixes guests")
            .path(environment: environment, ownExecutable: ownExecutable)
    }

    /// What the parent sends: the disks in the VM's order (formats explicit) and the options.
    package struct Request: Codable {
        package struct Disk: Codable {
            package var path: String
            package var format: String
        }
        package var disks: [Disk]
        package var options: ConversionOptions
        package var identifier: String
    }

    /// What the child answers: exactly one of the two.
    package struct Response: Codable {
        package var report: GuestFixReport?
        package var error: IsolatedSourceReader.ErrorPayload?

        package init(report: GuestFixReport? = nil, error: IsolatedSourceReader.ErrorPayload? = nil) {
            self.report = report
            self.error = error
        }
    }

    /// `LinuxGuestFixer.fix`, in the child. `request` and `answer` are files the child may
    /// write (the stage's work files); both are removed before returning.
    ///
    /// Throws `CancellationError` when the task is cancelled (the child is then stopped);
    /// a `.toolFailed` `StageError` naming the signal when the child crashes, which the
    /// retry policy retries: a crash inside libguestfs is not the input's fault as far as
    /// we can tell, and a fresh appliance often gets past it.
    public func fix(disks: [(path: URL, format: String)], options: ConversionOptions, identifier: String,
                    request requestFile: URL, answer answerFile: URL) async throws -> GuestFixReport {
        let about = disks.first?.path.path
        defer {
            try? FileManager.default.removeItem(at: requestFile)
            try? FileManager.default.removeItem(at: answerFile)
        }
        try? FileManager.default.removeItem(at: answerFile)
        let request = Request(disks: disks.map { .init(path: $0.path.path, format: $0.format) },
                              options: options, identifier: identifier)
        do {
            try JSONEncoder().encode(request).write(to: requestFile)
        } catch {
            throw StageError(.ioFailed, file: requestFile.path, "cannot write the guest fixer's request: \(error)")
        }
        // No backtrace from the Swift runtime: symbolicating one takes seconds, and the
        // first line ("Fatal error: …") is what the job's error quotes.
        let environment = ["SWIFT_BACKTRACE": "enable=no"].merging(extraEnvironment) { _, extra in extra }
        let command = ExternalCommand(executable, ["--request", requestFile.path, "--answer", answerFile.path],
                                      limits: Self.limits, environment: environment)
        let result = try await command.run(about: about)
        // A stopped child ends by our SIGTERM: the cause is the cancellation, not a crash.
        try Task.checkCancellation()
        switch result.termination {
        case .exited(0), .exited(IsolatedSourceReader.stageErrorStatus):
            let response: Response
            do {
                response = try JSONDecoder().decode(Response.self, from: Data(contentsOf: answerFile))
            } catch {
                throw StageError(.toolFailed, file: about,
                                 "the guest fixer ended with \(result.termination) but left no answer this program can read "
                                     + "(\(error))" + Self.lastWords(of: result.stderrText))
            }
            if let failure = response.error { throw failure.stageError(defaultFile: about ?? requestFile.path) }
            guard let report = response.report else {
                throw StageError(.toolFailed, file: about, "the guest fixer's answer has neither a report nor an error")
            }
            return report
        case .signaled(let signal):
            throw StageError(.toolFailed, file: about,
                             "the guest fixer crashed (signal \(signal): \(ExternalCommand.Termination.name(of: signal)))"
                                 + Self.lastWords(of: result.stderrText) + "; the daemon is unaffected")
        case .exited(let code):
            throw StageError(.toolFailed, file: about,
                             "the guest fixer exited with status \(code)" + Self.lastWords(of: result.stderrText))
        }
    }

    /// A wall clock only: the appliance needs its 2 GiB of memory and the guest's own tools
    /// their CPU. A fix runs the guest's initramfs and boot-loader tools in the appliance:
    /// 1 to 5 min under emulation for a real Debian, the Windows fixes less; two hours means
    /// the appliance or a guest tool hung, which no input we know of can cause on purpose.
    static let limits = ExternalCommand.Limits(
        wallClock: .init(.seconds(2 * 3600), blame: .toolFailed,
                         because: "a guest fix takes minutes even under emulation, so the appliance or a guest tool hung"))

    /// `: <the line that says why>` from the child's stderr, or nothing: the Swift runtime's
    /// "Fatal error: …" line when there is one, else the last line (libguestfs and qemu say
    /// what went wrong last, after any progress they printed).
    static func lastWords(of stderr: String) -> String {
        let lines = stderr.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard let line = lines.first(where: { $0.contains("Fatal error") }) ?? lines.last else { return "" }
        return ": " + line.prefix(500)
    }
}
