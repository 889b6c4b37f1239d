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
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // A child inherits its spawning thread's blocked signals and our ignored ones: Swift's
        // pool threads block SIGTERM, and the daemon ignores it to receive it as an event. So
        // qemu-img never saw the SIGTERM of a cancelled job and was killed 2 s later. env(1)
        // gives the tool default handling and an empty signal mask. It also sets the extra
        // variables, so the Process does not hold a copy of our whole environment (see below).
        let assignments = (childEnvironment ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        process.arguments = ["--default-signal"] + assignments + commandLine
        let outPipe = Pipe()
        let errPipe = Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        process.standardInput = FileHandle.nullDevice

        // Each pipe is read to end of file on a thread of its own. Dispatch readability
        // handlers did this before; torn down at a high rate they crashed libdispatch's
        // manager thread, and a chunk read just before exit could miss the final snapshot.
        let outReader = outPipe.fileHandleForReading, errReader = errPipe.fileHandleForReading
        async let stdout = BlockingWork.run("h2k-tool-out") { PipeReader.readToEnd(outReader, onChunk: onStdoutChunk) }
        async let stderr = BlockingWork.run("h2k-tool-err") { PipeReader.readToEnd(errReader, onChunk: nil) }
        // Foundation never frees a Process that has run (about 1.4 KB each, measured), and
        // with it whatever it holds: when it held the pipes, every command cost the daemon
        // two open descriptors, until libguestfs's select() met one above FD_SETSIZE and
        // aborted. The readers close their ends; these lines drop what the Process holds.
        defer {
            process.standardOutput = nil
            process.standardError = nil
            process.standardInput = nil
            process.terminationHandler = nil
        }
        // When this throws, leaving the scope awaits both readers; a tool that did not start
        // had its write ends closed, so they end at once.
        let status = try await exitStatus(of: process, writers: [outPipe.fileHandleForWriting, errPipe.fileHandleForWriting])
        return Result(status: status, stdout: try await stdout, stderr: try await stderr)
    }

    /// Starts `process` and waits for it to exit; cancelling the task terminates it.
    /// `writers` are our copies of the pipes' write ends: a process that could not start
    /// leaves them open, and the readers would never see end of file.
    private func exitStatus(of process: Process, writers: [FileHandle]) async throws -> Int32 {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int32, Error>) in
                process.terminationHandler = { finished in continuation.resume(returning: finished.terminationStatus) }
                do {
                    try process.run()
                } catch {
                    process.terminationHandler = nil
                    for writer in writers { try? writer.close() }
                    continuation.resume(throwing: StageError(.toolFailed, file: executable,
                                                             "cannot start \(commandLine.joined(separator: " ")): \(error)"))
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

/// Reads one of a child's pipes until every writer has closed it, then closes it.
private enum PipeReader {
    static func readToEnd(_ handle: FileHandle, onChunk: (@Sendable (Data) -> Void)?) -> Data {
        var collected = Data()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(handle.fileDescriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            // A read error on our own pipe ends the stream like end of file: what was read stays.
            guard count > 0 else {
                try? handle.close()
                return collected
            }
            let chunk = Data(buffer[0..<count])
            collected.append(chunk)
            onChunk?(chunk)
        }
    }
}
