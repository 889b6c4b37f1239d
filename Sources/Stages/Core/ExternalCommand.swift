import Foundation
import Subprocess
import Synchronization
#if canImport(System)
import System
#else
import SystemPackage
#endif

/// Runs a host tool (qemu-img, tar, gzip…) and captures what it said.
///
/// A non-zero exit status is a result, not an error: callers decide what it means and
/// call `requireSuccess` to turn it into a `StageError` that quotes the tool's stderr.
/// Running past the wall-clock limit is an error: `run` throws it (see ``Limits``).
///
/// Each tool runs in a process group of its own, so that stopping it (a cancelled job,
/// a wall-clock limit) reaches whatever it started too: SIGTERM to the group, 2 s of
/// grace, then SIGKILL to the group. The child starts with every signal at its default
/// disposition and an empty mask (Swift's pool threads block SIGTERM and the daemon
/// ignores it to receive it as an event; a child inherits both), with `LC_ALL=C` so that
/// the stderr texts some callers classify are in English, and with no descriptor of ours
/// but its three standard ones.
public struct ExternalCommand: Sendable {
    /// Resource limits. Address space and CPU time are applied through prlimit(1), as
    /// libguestfs does for `qemu-img info` on untrusted images (a crafted image must not
    /// exhaust memory or CPU); the wall clock is enforced here, since a tool blocked on a
    /// FIFO or a silent server uses no CPU at all.
    public struct Limits: Sendable {
        public var addressSpaceBytes: UInt64?
        public var cpuSeconds: Int?
        public var wallClock: WallClock?
        public init(addressSpaceBytes: UInt64? = nil, cpuSeconds: Int? = nil, wallClock: WallClock? = nil) {
            self.addressSpaceBytes = addressSpaceBytes
            self.cpuSeconds = cpuSeconds
            self.wallClock = wallClock
        }

        /// `qemu-img info` and `check` on an image that anyone may have dropped. On the
        /// largest real test images (Debian 12 as an 813 MB vhdx, a 216 MB vmdk, and as
        /// qcow2) each takes under 0.1 s, measured at a load average of 11 on 2 cores; 60 s
        /// is hundreds of times that. A probe still running then is waiting on something
        /// the image names (a FIFO, a device, an NBD or HTTP server that never answers),
        /// so the input is at fault, not the tool: `.badInput`, which is not retried.
        public static let untrustedProbe = Limits(
            addressSpaceBytes: 1 << 30, cpuSeconds: 10,
            wallClock: WallClock(.seconds(60), blame: .badInput,
                                 because: "a probe of an untrusted image that runs this long is waiting on something "
                                     + "the image names (a FIFO, a device or a network server) instead of reading it"))

        /// Limits for a tool that copies `bytes` (qemu-img convert, a decompression):
        /// 10 minutes plus `bytes` at 20 MiB/s. A copy runs at hundreds of MiB/s on any
        /// disk we support, so only a tool that is stuck (a source that stopped
        /// answering, an NFS server gone) reaches it; 2 TiB gets 29 h 20 min. The floor
        /// covers start-up and a loaded host on small images.
        public static func copying(bytes: UInt64) -> Limits {
            let seconds = Int64(clamping: copyingFloorSeconds + bytes / copyingFloorRate)
            return Limits(wallClock: WallClock(.seconds(seconds), blame: .toolFailed,
                                               because: "a copy of \(bytes) bytes gets \(copyingFloorSeconds / 60) min plus "
                                                   + "\(copyingFloorRate >> 20) MiB/s, far below any working disk, "
                                                   + "so the tool was stuck"))
        }

        static let copyingFloorSeconds: UInt64 = 600
        static let copyingFloorRate: UInt64 = 20 << 20

        /// A short tool that only talks to a local service (virsh, qemu-img create).
        public static func shortTool(_ duration: Duration, because reason: String) -> Limits {
            Limits(wallClock: WallClock(duration, blame: .toolFailed, because: reason))
        }
    }

    /// How long a tool may run, and what stopping it then means.
    public struct WallClock: Sendable, Equatable {
        public var duration: Duration
        /// `.badInput` when only a hostile input can make the tool hang, `.toolFailed` otherwise.
        public var blame: StageError.Code
        /// Why the limit is what it is, for the operator who reads the error.
        public var reason: String
        public init(_ duration: Duration, blame: StageError.Code, because reason: String) {
            self.duration = duration
            self.blame = blame
            self.reason = reason
        }
    }

    /// How the tool ended.
    public enum Termination: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        public var description: String {
            switch self {
            case .exited(let code): "exit status \(code)"
            case .signaled(let signal): "killed by signal \(signal) (\(Self.name(of: signal)))"
            }
        }

        static func name(of signal: Int32) -> String {
            guard let text = strsignal(signal) else { return "unknown signal" }
            return String(cString: text)
        }
    }

    public struct Result: Sendable {
        public var termination: Termination
        public var stdout: Data
        /// At most ``ExternalCommand/stderrCap`` bytes: the start and the end, with a marker between.
        public var stderr: Data
        /// False when stdout ran past ``ExternalCommand/stdoutLimit`` and only its start was kept.
        public var stdoutComplete = true
        /// The exit code, or 128 + the signal number for a tool killed by a signal (the
        /// shell's convention), so a signal is never 0 and never one of qemu-img's codes.
        public var status: Int32 {
            switch termination {
            case .exited(let code): code
            case .signaled(let signal): 128 + signal
            }
        }
        public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
        public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    }

    public var executable: String
    public var arguments: [String]
    public var limits: Limits?
    public var environment: [String: String]?
    /// At most this many bytes of stdout are kept (the rest is read and dropped); nil keeps
    /// all. For tools whose output grows with what an untrusted image holds (`qemu-img map`).
    public var stdoutLimit: Int?

    public init(_ executable: String, _ arguments: [String], limits: Limits? = nil, environment: [String: String]? = nil) {
        self.executable = executable
        self.arguments = arguments
        self.limits = limits
        self.environment = environment
    }

    /// The stderr kept of a tool: its first and its last half of this. A tool that
    /// complains in a loop (one line per bad cluster of a hostile image) must not fill
    /// the daemon's memory or the journal; the start says what went wrong first, the end
    /// how it ended.
    public static let stderrCap = 32 * 1024

    /// The grace a tool gets between SIGTERM and SIGKILL: qemu-img finishes in-flight
    /// requests on SIGTERM; a shutdown waits at most this long for it.
    static let terminationGrace: Duration = .seconds(2)

    /// What the child gets on top of our environment. `LC_ALL=C`: callers recognise some
    /// failures by the tool's English words ("No space left on device"). Under an
    /// address-space limit glibc is held to one malloc arena: it reserves 64 MiB of address
    /// space for each thread that allocates, so a qemu-img whose thread pool grows under
    /// slow I/O hit a 1 GiB limit at a dozen threads while using under 100 MiB, and aborted
    /// in qemu_thread_create. The caller's own variables win.
    var childEnvironment: [String: String] {
        var variables = ["LC_ALL": "C"]
        if limits?.addressSpaceBytes != nil { variables["MALLOC_ARENA_MAX"] = "1" }
        return variables.merging(environment ?? [:]) { _, caller in caller }
    }

    /// The command line as it will be executed (prlimit prefix included), for logs and errors.
    public var commandLine: [String] {
        var prefix = ["prlimit"]
        if let bytes = limits?.addressSpaceBytes { prefix.append("--as=\(bytes)") }
        if let cpu = limits?.cpuSeconds { prefix.append("--cpu=\(cpu)") }
        guard prefix.count > 1 else { return [executable] + arguments }
        return prefix + ["--", executable] + arguments
    }

    private var toolName: String { URL(fileURLWithPath: executable).lastPathComponent }

    /// Runs to completion. `onStdoutChunk` sees stdout as it arrives (for progress parsing).
    /// Throws `CancellationError` when the task was cancelled before the tool started (it is
    /// then never started), and the limit's `StageError`, filed under `file`, when the wall
    /// clock ran out; a task cancelled while the tool runs stops it and returns its termination.
    public func run(about file: String? = nil, onStdoutChunk: (@Sendable (Data) -> Void)? = nil) async throws -> Result {
        try Task.checkCancellation()
        guard let wallClock = limits?.wallClock else { return try await runToEnd(onStdoutChunk: onStdoutChunk) }
        let start = RunStart()
        let outcome = try await withThrowingTaskGroup(of: RaceOutcome?.self) { group in
            group.addTask { .finished(try await self.runToEnd(onStdoutChunk: onStdoutChunk, start: start)) }
            group.addTask {
                // A cancelled sleep is the tool finishing first (or the caller giving up): no verdict.
                do { return try await start.deadlinePassed(after: wallClock.duration) ? .deadline : nil } catch { return nil }
            }
            var deadlinePassed = false
            while true {
                let next: RaceOutcome??
                do {
                    next = try await group.next()
                } catch where deadlinePassed {
                    // However the stopped run ended, the cause is the limit.
                    return RaceOutcome.deadline
                }
                guard let next else { break }
                switch next {
                case .finished(let result)?:
                    group.cancelAll()
                    return deadlinePassed ? RaceOutcome.deadline : .finished(result)
                case .deadline?:
                    deadlinePassed = true
                    // Cancelling the run tears the tool's group down; its result is awaited above.
                    group.cancelAll()
                case nil:
                    continue
                }
            }
            return RaceOutcome.deadline
        }
        switch outcome {
        case .finished(let result): return result
        case .deadline: throw overrun(wallClock, about: file)
        }
    }

    private enum RaceOutcome: Sendable {
        case finished(Result)
        case deadline
    }

    /// When the tool really started, and whether it still runs: the wall clock is the tool's,
    /// not our executor's. Under load (seen in CI: a test process whose threads were all busy
    /// for minutes) a task can resume long after its tool exited, or start it late; judging
    /// by the sleeping task alone then "stopped" a `qemu-img info` that had taken 0.1 s.
    final class RunStart: Sendable {
        private let state = Mutex<(pid: pid_t, at: ContinuousClock.Instant)?>(nil)

        func record(_ pid: pid_t) { state.withLock { $0 = (pid, .now) } }

        /// Sleeps until the tool has run for `duration`; false when it ended on its own first.
        func deadlinePassed(after duration: Duration) async throws -> Bool {
            try await Task.sleep(for: duration)
            while true {
                guard let started = state.withLock({ $0 }) else {
                    // Not started yet: the limit has not begun to run.
                    try await Task.sleep(for: .seconds(1))
                    continue
                }
                guard Self.isRunning(started.pid) else { return false }
                let ran = ContinuousClock.now - started.at
                if ran >= duration { return true }
                try await Task.sleep(for: duration - ran)
            }
        }

        /// Alive and not a zombie (an exited, not yet reaped tool has finished its work).
        static func isRunning(_ pid: pid_t) -> Bool {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let state = stat[stat.index(after: close)...].drop { $0 == " " }.first
            return state != nil && state != "Z" && state != "X"
        }
    }

    private func overrun(_ wallClock: WallClock, about file: String?) -> StageError {
        let seconds = wallClock.duration.components.seconds
        return StageError(wallClock.blame, file: file,
                          "\(toolName) was stopped after \(seconds) s, its wall-clock limit (\(wallClock.reason)): "
                              + commandLine.joined(separator: " "))
    }

    /// Spawns the tool in a group of its own and reads both its pipes to the end.
    private func runToEnd(onStdoutChunk: (@Sendable (Data) -> Void)?, start: RunStart? = nil) async throws -> Result {
        let line = commandLine
        guard let first = line.first else { throw StageError(.toolFailed, "an empty command line cannot be run") }
        var options = PlatformOptions()
        // 0: the child's own pid becomes its group id, set before exec.
        options.processGroupID = 0
        options.teardownSequence = [.send(signal: .terminate, toProcessGroup: true,
                                          allowedDurationToNextStep: Self.terminationGrace)]
        let updates = Dictionary(uniqueKeysWithValues: childEnvironment.map { (Environment.Key(stringLiteral: $0.key), Optional($0.value)) })
        let executable: Executable = first.contains("/") ? .path(FilePath(first)) : .name(first)
        let outcome: ExecutionResult<((Data, Bool), Data), SequenceOutput, SequenceOutput>
        do {
            outcome = try await Subprocess.run(
                executable, arguments: Arguments(Array(line.dropFirst())),
                environment: .inherit.updating(updates), platformOptions: options,
                input: .none, output: .sequence, error: .sequence
            ) { execution in
                start?.record(execution.processIdentifier.value)
                async let errors = Self.collectCapped(execution.standardError)
                let output = await Self.collect(execution.standardOutput, limit: stdoutLimit, onChunk: onStdoutChunk)
                return (output, await errors)
            }
        } catch let error as SubprocessError {
            throw StageError(.toolFailed, file: self.executable, "cannot start \(line.joined(separator: " ")): \(error)")
        }
        Self.killStragglers(ofGroup: outcome.processIdentifier.value)
        let termination: Termination = switch outcome.terminationStatus {
        case .exited(let code): .exited(code)
        case .signaled(let signal): .signaled(signal)
        }
        return Result(termination: termination, stdout: outcome.closureResult.0.0, stderr: outcome.closureResult.1,
                      stdoutComplete: outcome.closureResult.0.1)
    }

    /// Whatever the tool started and left behind dies with it: a grandchild would hold
    /// its pipes and whatever it opened. The group id is the tool's pid, which was just
    /// reaped; Linux gives no new process a pid that is still a live group's id, so this
    /// reaches only the tool's own group, or nobody (ESRCH) once the group is empty,
    /// unless the pid space wrapped around in between (4 million pids later).
    private static func killStragglers(ofGroup group: pid_t) {
        guard group > 1 else { return }
        _ = kill(-group, SIGKILL)
    }

    /// stdout to its end, kept up to `limit` bytes; true when all of it was kept. A read
    /// error on our own pipe ends the stream like end of file: what was read stays.
    private static func collect(_ stream: SubprocessOutputSequence, limit: Int?,
                                onChunk: (@Sendable (Data) -> Void)?) async -> (Data, Bool) {
        var collected = Data()
        var complete = true
        do {
            for try await buffer in stream {
                let chunk = buffer.withUnsafeBytes { Data($0) }
                if let limit, collected.count + chunk.count > limit {
                    collected.append(chunk.prefix(max(0, limit - collected.count)))
                    complete = false
                } else {
                    collected.append(chunk)
                }
                onChunk?(chunk)
            }
        } catch {}
        return (collected, complete)
    }

    private static func collectCapped(_ stream: SubprocessOutputSequence) async -> Data {
        var capped = CappedBytes(limit: stderrCap)
        do {
            for try await buffer in stream { buffer.withUnsafeBytes { capped.append($0) } }
        } catch {}
        return capped.data
    }

    /// Runs and throws a `StageError` quoting stderr unless the exit status is 0.
    @discardableResult
    public func runChecked(about file: String? = nil) async throws -> Result {
        let result = try await run(about: file)
        try result.requireSuccess(of: self, about: file)
        return result
    }
}

/// The first and the last `limit / 2` bytes of a stream, and how many were left out between.
struct CappedBytes {
    let limit: Int
    private(set) var head = Data()
    private var tail = Data()
    private(set) var droppedCount = 0

    init(limit: Int) { self.limit = limit }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        let half = limit / 2
        let headRoom = max(0, half - head.count)
        head.append(contentsOf: bytes.prefix(headRoom))
        let rest = bytes.dropFirst(headRoom)
        guard !rest.isEmpty else { return }
        tail.append(contentsOf: rest)
        if tail.count > half {
            let excess = tail.count - half
            droppedCount += excess
            tail.removeFirst(excess)
        }
    }

    var data: Data {
        guard droppedCount > 0 else { return head + tail }
        return head + Data("\n[… \(droppedCount) bytes of output left out …]\n".utf8) + tail
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
        guard termination != .exited(0) else { return }
        try requireHostResources(of: command, about: file)
        let stderrLines = stderrText.trimmingCharacters(in: .whitespacesAndNewlines)
        let reason = stderrLines.isEmpty ? termination.description
            : (termination.isSignal ? "\(termination.description): \(stderrLines)" : stderrLines)
        let code: StageError.Code = stderrLines.contains("No space left on device") ? .noSpace : .toolFailed
        throw StageError(code, file: file, "\(URL(fileURLWithPath: command.executable).lastPathComponent) failed: \(reason)")
    }
}

extension ExternalCommand.Termination {
    var isSignal: Bool {
        if case .signaled = self { return true }
        return false
    }
}
