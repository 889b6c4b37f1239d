import Foundation

/// Runs our own parsers of untrusted bytes (`InputProbe.identify`, `SourceReader.read`:
/// archive headers, descriptors, OVF XML, manifests) in a child process under resource
/// limits, so that a parser trap, a runaway allocation or a loop costs one job, never the
/// daemon. The child is the `hyper2kvm` executable itself, run as the hidden subcommand
/// `hyper2kvm internal read-source`; it answers with one JSON document on stdout.
public struct IsolatedSourceReader: Sendable {
    /// The `hyper2kvm` executable that serves `internal read-source`.
    public var executable: String
    /// Added to the child's environment (tests arm the reader's test trap with it).
    var extraEnvironment: [String: String]

    public init(executable: String) {
        self.init(executable: executable, extraEnvironment: [:])
    }

    init(executable: String, extraEnvironment: [String: String]) {
        self.executable = executable
        self.extraEnvironment = extraEnvironment
    }

    /// The arguments that select the hidden subcommand.
    public static let subcommand = ["internal", "read-source"]
    /// Overrides where the executable is looked for.
    public static let executableVariable = "HYPER2KVM_EXECUTABLE"
    static let productName = "hyper2kvm"

    /// Finds the executable (see `ownExecutable(for:environment:)`).
    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> IsolatedSourceReader {
        IsolatedSourceReader(executable: try ownExecutable(for: "reads sources", environment: environment))
    }

    /// The `hyper2kvm` executable that serves our hidden children (`internal read-source`,
    /// `internal supervise`; see `CompanionExecutable`): `HYPER2KVM_EXECUTABLE` when set, our
    /// own program when it is `hyper2kvm`, else a `hyper2kvm` beside it. `purpose` completes
    /// "the executable that … in a child process" when none is found.
    static func ownExecutable(for purpose: String, environment: [String: String]) throws -> String {
        try CompanionExecutable(name: productName, variable: executableVariable, purpose: purpose).path(environment: environment)
    }

    /// `InputProbe.identify(source)`, in the child.
    public func identify(_ source: URL) async throws -> InputKind {
        let limits = Self.limits(sourceBytes: Self.size(of: source))
        let response = try await ask(["--identify", source.path], about: source, limits: limits)
        guard let kind = response.kind else { throw noAnswer(about: source, expected: "kind") }
        return kind
    }

    /// `SourceReader.read(source:kind:scratchDirectory:manifestAllowedDirectories:)`, in the child.
    public func read(source: URL, kind: InputKind, scratchDirectory: URL,
                     manifestAllowedDirectories: [String] = []) async throws -> SourceReading {
        let limits = Self.limits(sourceBytes: Self.size(of: source), reading: kind)
        let allowed = manifestAllowedDirectories.flatMap { ["--manifest-allowed-dir", $0] }
        let response = try await ask(["--kind", kind.rawValue, "--scratch", scratchDirectory.path] + allowed + [source.path],
                                     about: source, limits: limits)
        guard let reading = response.reading else { throw noAnswer(about: source, expected: "reading") }
        return reading
    }

    /// The child's limits. Address space: the reader holds headers, descriptors and an OVF
    /// document, never a disk (measured: 33 MB resident reading a disk, and it runs in
    /// 300 MiB of address space), so only a parser that allocates without bound reaches 2 GiB.
    /// CPU: reading an OVA hashes every member (about 400 MiB/s here), so 60 s plus 50 MiB/s
    /// of source. Wall clock: as a copy of the source (`Limits.copying`), blamed on the
    /// input, since the reader's own tools (qemu-img) have shorter limits of their own and
    /// the source is a regular local file: a reader still running then was made to loop.
    ///
    /// Reading a gzip AMI decompresses it into the scratch directory (gzip, a child of the
    /// reader, inherits its limits), a copy whose size the archive does not state: no CPU
    /// limit, since gzip's work grows with the decompressed size, and the wall clock of a
    /// copy 64 times the compressed size (a disk image that compresses better than that is
    /// mostly empty, and its zeros decompress and write at hundreds of MiB/s).
    static func limits(sourceBytes: UInt64, reading kind: InputKind? = nil) -> ExternalCommand.Limits {
        let decompresses = kind == .ami
        let (copied, copiedOverflow) = sourceBytes.multipliedReportingOverflow(by: decompresses ? 64 : 1)
        var limits = ExternalCommand.Limits.copying(bytes: copiedOverflow ? .max : copied)
        limits.addressSpaceBytes = 2 << 30
        limits.cpuSeconds = decompresses ? nil : Int(clamping: 60 + sourceBytes / (50 << 20))
        if let duration = limits.wallClock?.duration {
            let rule = decompresses ? "decompressing an AMI of \(sourceBytes) bytes gets as long as copying 64 times that"
                : "reading a source of \(sourceBytes) bytes gets as long as copying it"
            limits.wallClock = .init(duration, blame: .badInput,
                                     because: rule + " at 20 MiB/s plus 10 min; only an input made to keep the reader busy "
                                         + "takes longer")
        }
        return limits
    }

    private static func size(of source: URL) -> UInt64 {
        (try? FileManager.default.attributesOfItem(atPath: source.path)[.size] as? NSNumber)?.uint64Value ?? 0
    }

    private func ask(_ arguments: [String], about source: URL, limits: ExternalCommand.Limits) async throws -> Response {
        // No backtrace from the Swift runtime: symbolicating one takes seconds, and the
        // first line ("Fatal error: …") is what the job's error quotes.
        let environment = ["SWIFT_BACKTRACE": "enable=no"].merging(extraEnvironment) { _, extra in extra }
        let command = ExternalCommand(executable, Self.subcommand + arguments, limits: limits, environment: environment)
        let result = try await command.run(about: source.path)
        switch result.termination {
        case .exited(0), .exited(Self.stageErrorStatus):
            let response: Response
            do {
                response = try JSONDecoder().decode(Response.self, from: result.stdout)
            } catch {
                throw StageError(.toolFailed, file: source.path,
                                 "the source reader answered with JSON this program cannot read (\(error)): "
                                     + String(decoding: result.stdout.prefix(200), as: UTF8.self))
            }
            // An error that names no file (a tool's wall-clock limit) is about the source read.
            if let failure = response.error { throw failure.stageError(defaultFile: source.path) }
            return response
        case .signaled(let signal):
            throw StageError(.badInput, file: source.path,
                             "reading the source crashed the reader (signal \(signal): \(ExternalCommand.Termination.name(of: signal)))"
                                 + Self.firstWords(of: result.stderrText) + "; the daemon is unaffected")
        case .exited(let code):
            throw StageError(.toolFailed, file: source.path,
                             "the source reader exited with status \(code)" + Self.firstWords(of: result.stderrText))
        }
    }

    private func noAnswer(about source: URL, expected: String) -> StageError {
        StageError(.toolFailed, file: source.path, "the source reader's answer has no \(expected)")
    }

    /// `: <the line that says why>` from the child's stderr, or nothing: the Swift runtime's
    /// "Fatal error: …" line when there is one, else the first line.
    static func firstWords(of stderr: String) -> String {
        let lines = stderr.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard let line = lines.first(where: { $0.contains("Fatal error") }) ?? lines.first else { return "" }
        return ": " + line.prefix(500)
    }

    // MARK: The child's side

    /// The exit status of a child that answers with a `StageError`.
    public static let stageErrorStatus: Int32 = 2

    /// What the child prints: exactly one of the three.
    struct Response: Codable {
        var kind: InputKind?
        var reading: SourceReading?
        var error: ErrorPayload?
    }

    package struct ErrorPayload: Codable {
        var code: StageError.Code
        var file: String?
        var message: String

        package init(_ error: StageError) {
            code = error.code
            file = error.file
            message = error.message
        }

        func stageError(defaultFile: String) -> StageError { StageError(code, file: file ?? defaultFile, message) }
    }

    /// What the hidden subcommand does: the work, in this process, and the JSON and exit
    /// status to answer with. `kind` nil means identify; otherwise read as that kind.
    public static func serve(source: String, kind: String?, scratchDirectory: String?,
                             manifestAllowedDirectories: [String] = []) async -> (output: Data, status: Int32) {
        let sourceURL = URL(fileURLWithPath: source)
        var response = Response()
        do {
            if let kind {
                guard let inputKind = InputKind(rawValue: kind) else {
                    throw StageError(.toolFailed, file: source, "the source reader was asked for an unknown kind '\(kind)'")
                }
                guard let scratchDirectory else {
                    throw StageError(.toolFailed, file: source, "the source reader needs a scratch directory to read a source")
                }
                response.reading = try await SourceReader.read(source: sourceURL, kind: inputKind,
                                                               scratchDirectory: URL(fileURLWithPath: scratchDirectory),
                                                               manifestAllowedDirectories: manifestAllowedDirectories)
            } else {
                response.kind = try InputProbe.identify(sourceURL)
            }
        } catch let error as StageError {
            response = Response(error: ErrorPayload(error))
        } catch {
            response = Response(error: ErrorPayload(StageError(.toolFailed, file: source, "reading the source failed: \(error)")))
        }
        let status = response.error == nil ? 0 : stageErrorStatus
        do {
            return (try JSONEncoder().encode(response), status)
        } catch {
            // Nothing we encode can fail to encode; the parent reports an unreadable answer if it ever does.
            return (Data(), 1)
        }
    }
}
