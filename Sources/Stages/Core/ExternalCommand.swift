import Foundation

/// Runs a host tool (qemu-img, tar, gzip…) and captures what it said.
///
/// A non-zero exit status is a result, not an error: callers decide what it means and
/// call `requireSuccess` to turn it into a `StageError` that quotes the tool's stderr.
public struct ExternalCommand: Sendable {
    /// Resource limits applied through prlimit(1), as libguestfs does for `qemu-img info`
    /// on untrusted images (a crafted image must not exhaust memory or CPU).
    public struct Limits: Sendable {
        public var addressSpaceBytes: UInt64?
        public var cpuSeconds: Int?
        public init(addressSpaceBytes: UInt64? = nil, cpuSeconds: Int? = nil) {
            self.addressSpaceBytes = addressSpaceBytes
            self.cpuSeconds = cpuSeconds
        }
        public static let untrustedProbe = Limits(addressSpaceBytes: 1 << 30, cpuSeconds: 10)
    }

    public struct Result: Sendable {
        public var status: Int32
        public var stdout: Data
        public var stderr: Data
        public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
        public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    }

    public var executable: String
    public var arguments: [String]
    public var limits: Limits?
    public var environment: [String: String]?

    public init(_ executable: String, _ arguments: [String], limits: Limits? = nil, environment: [String: String]? = nil) {
        self.executable = executable
        self.arguments = arguments
        self.limits = limits
        self.environment = environment
    }

    /// What the child gets on top of our environment. Under an address-space limit glibc
    /// is held to one malloc arena: it reserves 64 MiB of address space for each thread
    /// that allocates, so a qemu-img whose thread pool grows under slow I/O hit a 1 GiB
    /// limit at a dozen threads while using under 100 MiB, and aborted in
    /// qemu_thread_create.
    var childEnvironment: [String: String]? {
        guard limits != nil else { return environment }
        return ["MALLOC_ARENA_MAX": "1"].merging(environment ?? [:]) { _, caller in caller }
    }

    /// The command line as it will be executed (prlimit prefix included), for logs and errors.
    public var commandLine: [String] {
        guard let limits else { return [executable] + arguments }
        var prefix = ["prlimit"]
        if let bytes = limits.addressSpaceBytes { prefix.append("--as=\(bytes)") }
        if let cpu = limits.cpuSeconds { prefix.append("--cpu=\(cpu)") }
        return prefix + ["--", executable] + arguments
    }

    /// Runs to completion. `onStdoutChunk` sees stdout as it arrives (for progress parsing).
    public func run(onStdoutChunk: (@Sendable (Data) -> Void)? = nil) async throws -> Result {
        let line = commandLine
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = line
        if let childEnvironment {
            process.environment = ProcessInfo.processInfo.environment.merging(childEnvironment) { _, new in new }
        }
        let outPipe = Pipe()
        let errPipe = Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        process.standardInput = FileHandle.nullDevice

        let collected = OutputCollector()
        outPipe.fileHandleForReading.readabilityHandler = { handle in
            guard let chunk = collected.readOut(from: handle) else { return }
            onStdoutChunk?(chunk)
        }
        errPipe.fileHandleForReading.readabilityHandler = { handle in
            collected.readErr(from: handle)
        }

        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Result, Error>) in
                process.terminationHandler = { finished in
                    outPipe.fileHandleForReading.readabilityHandler = nil
                    errPipe.fileHandleForReading.readabilityHandler = nil
                    // Whatever arrived between the last handler call and exit. A handler still
                    // running holds the collector's lock while it reads and appends, so its chunk
                    // lands before this drain instead of after the snapshot.
                    let (out, err) = collected.drainAndSnapshot(out: outPipe.fileHandleForReading,
                                                                err: errPipe.fileHandleForReading)
                    continuation.resume(returning: Result(status: finished.terminationStatus, stdout: out, stderr: err))
                }
                do {
                    try process.run()
                } catch {
                    process.terminationHandler = nil
                    continuation.resume(throwing: StageError(.toolFailed, file: executable,
                                                             "cannot start \(line.joined(separator: " ")): \(error)"))
                }
            }
        } onCancel: {
            guard process.isRunning else { return }
            process.terminate()
            // qemu-img finishes in-flight requests on SIGTERM; a shutdown waits at most 2 s for it.
            let pid = process.processIdentifier
            Task {
                try? await Task.sleep(for: .seconds(2))
                if process.isRunning { kill(pid, SIGKILL) }
            }
        }
    }

    /// Runs and throws a `StageError` quoting stderr unless the exit status is 0.
    @discardableResult
    public func runChecked(about file: String? = nil) async throws -> Result {
        let result = try await run()
        try result.requireSuccess(of: self, about: file)
        return result
    }
}

extension ExternalCommand.Result {
    /// The tool's own words when it died because the host could not give it a thread or
    /// a stack (qemu aborts with "qemu_thread_create: Resource temporarily unavailable" or
    /// "failed to allocate memory for stack"). A stack's size does not depend on the
    /// image, so such a failure says nothing about the input and may pass.
    public var hostResourceFailure: String? {
        let text = stderrText
        let signs = ["qemu_thread_create", "Resource temporarily unavailable", "failed to allocate memory for stack"]
        guard signs.contains(where: text.contains) else { return nil }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Throws a retryable `toolFailed` when ``hostResourceFailure`` applies, so that a
    /// caller who would read a failed probe as damaged input does not blame the image.
    public func requireHostResources(of command: ExternalCommand, about file: String?) throws {
        guard let failure = hostResourceFailure else { return }
        let tool = URL(fileURLWithPath: command.executable).lastPathComponent
        throw StageError(.toolFailed, file: file,
                         "\(tool) could not get a thread or memory from the host (\(failure)); the input is not at fault "
                             + "and the step can be retried")
    }

    public func requireSuccess(of command: ExternalCommand, about file: String? = nil) throws {
        guard status != 0 else { return }
        try requireHostResources(of: command, about: file)
        let stderrLines = stderrText.trimmingCharacters(in: .whitespacesAndNewlines)
        let reason = stderrLines.isEmpty ? "exit status \(status)" : stderrLines
        let code: StageError.Code = stderrLines.contains("No space left on device") ? .noSpace : .toolFailed
        throw StageError(code, file: file, "\(URL(fileURLWithPath: command.executable).lastPathComponent) failed: \(reason)")
    }
}

/// Accumulates a child's output from the pipes' reader threads.
private final class OutputCollector: @unchecked Sendable {
    // Guarded by `lock`; the pipes' readability handlers run on Foundation's threads. Each read
    // happens under the lock together with its append: a handler that had read a chunk but
    // not yet stored it when the process exited would otherwise lose it to the final
    // snapshot (seen under load as a `qemu-img info` with status 0 and no output).
    private let lock = NSLock()
    private var out = Data()
    private var err = Data()

    /// Reads what stdout has now; returns it (nil at end of file).
    func readOut(from handle: FileHandle) -> Data? {
        lock.withLock {
            let chunk = handle.availableData
            guard !chunk.isEmpty else { return nil }
            out.append(chunk)
            return chunk
        }
    }

    func readErr(from handle: FileHandle) {
        lock.withLock { err.append(handle.availableData) }
    }

    /// Reads both pipes to end of file and returns everything collected.
    func drainAndSnapshot(out outHandle: FileHandle, err errHandle: FileHandle) -> (Data, Data) {
        lock.withLock {
            out.append(outHandle.readDataToEndOfFile())
            err.append(errHandle.readDataToEndOfFile())
            return (out, err)
        }
    }
}
