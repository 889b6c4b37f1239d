import Foundation

/// Runs the guest fix (`LinuxGuestFixer`, which hands a Windows guest to `WindowsGuestFixer`)
/// in a child process: the `hyper2kvm` executable itself, as the hidden subcommand
/// `hyper2kvm internal fix-guest`. libguestfs is C code that can abort or crash, and a fix
/// runs guest tools (update-initramfs, grub) for minutes that nothing inside the process
/// can interrupt; in a child, a crash fails one stage, and a cancellation (a shutdown)
/// stops the fix within `ExternalCommand`'s grace by tearing down the child's process
/// group, which holds the appliance's qemu too. The daemon itself never calls libguestfs,
/// so it never maps the library.
///
/// The request (overlays and options) goes in a file and the report comes back in a file:
/// a report can be large, and stdout and stderr belong to libguestfs and qemu (stderr is
/// capped by `ExternalCommand`).
public struct IsolatedGuestFixer: Sendable {
    /// The `hyper2kvm` executable that serves `internal fix-guest`.
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

    /// The arguments that select the hidden subcommand.
    public static let subcommand = ["internal", "fix-guest"]

    /// The same executable as the source reader's child (see `IsolatedSourceReader.ownExecutable`).
    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> IsolatedGuestFixer {
        IsolatedGuestFixer(executable: try IsolatedSourceReader.ownExecutable(for: "fixes guests", environment: environment))
    }

    /// What the parent sends: the disks in the VM's order (formats explicit) and the options.
    struct Request: Codable {
        struct Disk: Codable {
            var path: String
            var format: String
        }
        var disks: [Disk]
        var options: ConversionOptions
        var identifier: String
    }

    /// What the child answers: exactly one of the two.
    struct Response: Codable {
        var report: GuestFixReport?
        var error: IsolatedSourceReader.ErrorPayload?
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
        let command = ExternalCommand(executable, Self.subcommand + ["--request", requestFile.path, "--answer", answerFile.path],
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

    // MARK: The child's side

    /// What the hidden subcommand does: reads the request, fixes the guest in this process
    /// and writes the answer; returns the exit status (0, or 2 with a `StageError` answered).
    public static func serve(request requestPath: String, answer answerPath: String) async -> Int32 {
        OrphanWatch.start()
        var response = Response()
        do {
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: requestPath))
            } catch {
                throw StageError(.ioFailed, file: requestPath, "cannot read the guest fixer's request: \(error)")
            }
            let request: Request
            do {
                request = try JSONDecoder().decode(Request.self, from: data)
            } catch {
                throw StageError(.toolFailed, file: requestPath, "the guest fixer's request is not JSON it can read: \(error)")
            }
            var fixer = LinuxGuestFixer()
            if let hook = GuestFixTestHook.fromEnvironment() { fixer.checkpoint = { hook.fire(at: $0) } }
            response.report = try await fixer.fix(disks: request.disks.map { (URL(fileURLWithPath: $0.path), $0.format) },
                                                  options: request.options, identifier: request.identifier)
        } catch let error as StageError {
            response = Response(error: .init(error))
        } catch {
            response = Response(error: .init(StageError(.toolFailed, file: requestPath, "the guest fix failed: \(error)")))
        }
        do {
            try JSONEncoder().encode(response).write(to: URL(fileURLWithPath: answerPath), options: .atomic)
        } catch {
            FileHandle.standardError.write(Data("cannot write the guest fixer's answer to \(answerPath): \(error)\n".utf8))
            return 1
        }
        return response.error == nil ? 0 : IsolatedSourceReader.stageErrorStatus
    }
}

/// A fixer whose parent died (the daemon was killed) must not go on writing an overlay
/// nobody will use, with an appliance that holds gigabytes: a thread checks once a second
/// whether the child was re-parented, and then kills its own process group (the child and
/// the appliance's qemu; `ExternalCommand` made the child a group leader).
enum OrphanWatch {
    static func start() {
        let parent = getppid()
        let thread = Thread {
            while true {
                sleep(1)
                if getppid() != parent { _ = kill(0, SIGKILL) }
            }
        }
        thread.name = "h2k-orphan-watch"
        thread.start()
    }
}

/// Tests prove that a guest-fix child that crashes or stalls costs one stage attempt, not
/// the daemon: `HYPER2KVM_GUESTFIX_HOOK_FOR_TESTS=<action>@<point>` makes the child, at the
/// fixer's checkpoint `<point>` (`started`, before libguestfs; `launched`; `inspected`),
/// SIGKILL itself (`kill`), abort (`abort`), or stall until it is stopped (`stall`, a guest
/// tool that never ends). With
/// `HYPER2KVM_GUESTFIX_HOOK_ONCE=<file>` it fires only while that file does not exist, and
/// creates it first, so the next attempt runs normally. Only the child reads these
/// variables; nothing in a dropped file can set them.
struct GuestFixTestHook: Sendable {
    static let variable = "HYPER2KVM_GUESTFIX_HOOK_FOR_TESTS"
    static let onceVariable = "HYPER2KVM_GUESTFIX_HOOK_ONCE"

    enum Action: String, Sendable { case kill, abort, stall }
    var action: Action
    var point: String
    var onceFile: String?

    static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> GuestFixTestHook? {
        guard let armed = environment[variable], !armed.isEmpty else { return nil }
        let parts = armed.split(separator: "@", maxSplits: 1).map(String.init)
        guard parts.count == 2, let action = Action(rawValue: parts[0]) else {
            FileHandle.standardError.write(Data("\(variable)=\(armed) is not <kill|abort|stall>@<point>; ignored\n".utf8))
            return nil
        }
        return GuestFixTestHook(action: action, point: parts[1], onceFile: environment[onceVariable].flatMap { $0.isEmpty ? nil : $0 })
    }

    func fire(at point: String) {
        guard point == self.point else { return }
        if let onceFile {
            // O_EXCL: only the attempt that creates the file fires.
            let descriptor = open(onceFile, O_WRONLY | O_CREAT | O_EXCL, 0o644)
            guard descriptor >= 0 else { return }
            close(descriptor)
        }
        FileHandle.standardError.write(Data("\(Self.variable): \(action.rawValue) at \(point)\n".utf8))
        switch action {
        case .kill: _ = kill(getpid(), SIGKILL)
        case .abort: abort()
        case .stall: while true { sleep(60) }
        }
    }
}
