import ArgumentParser
import Daemon
import Foundation
import Journal
import Stages
import StatusEndpoint
import Synchronization

/// Wiring only: the logic lives in the Daemon module.
enum ConvertLauncher {
    static func run(source: String, configuration: Configuration) async throws {
        if let problem = GuestConverterCheck.problem(configuration) { throw StartRefused(reasons: [problem]) }
        let logger = LogSetup.makeLogger(verbose: configuration.verbose, logFile: configuration.logFile)
        let bar = ProgressLine(isTerminal: isatty(STDERR_FILENO) == 1)
        let conversion = OneShotConversion(configuration: configuration, logger: logger)
        let started = ContinuousClock.now
        let conversionTask = Task {
            try await conversion.run(source: URL(fileURLWithPath: source).standardizedFileURL) { _, fraction in
                bar.show(fraction)
            }
        }
        // Each tool runs in a process group of its own, so the terminal's Ctrl-C no longer
        // reaches it: the signal cancels the conversion, which stops the tool's whole group
        // and leaves the job interrupted, to be resumed by the same command.
        let stopSignals = StopSignals { conversionTask.cancel() }
        let outcome: OneShotConversion.Lifecycle.Ending
        do {
            outcome = try await conversionTask.value
        } catch is CancellationError where stopSignals.received {
            bar.finish()
            FileHandle.standardError.write(Data("interrupted: run the same command again to resume\n".utf8))
            throw ExitCode(130)
        }
        bar.finish()
        let elapsed = ContinuousClock.now - started
        switch outcome {
        case .published(let path, let result):
            let took = elapsed.formatted(.units(allowed: [.hours, .minutes, .seconds], width: .narrow))
            if let result, configuration.conversion.dryRun {
                // A preflight: nothing was converted; the path is the report's.
                print("\(result)\n\(source): preflight report \(path) in \(took)")
            } else if let result {
                // Not a plain success: the guest fix could not promise the guest boots.
                print("\(result)\n\(source) → \(path) in \(took) (see metadata.json fix_warnings)")
            } else {
                print("converted \(source) → \(path) in \(took)")
            }
        case .failed(let stage, let message, _):
            throw ConversionFailed(stage: stage, message: message)
        case .waitingForSpace(let stage, let message):
            throw ConversionFailed(stage: stage, message: message)
        case .retrying, .interrupted:
            // The conversion waits out retries and stops only by cancellation (handled above).
            FileHandle.standardError.write(Data("interrupted: run the same command again to resume\n".utf8))
            throw ExitCode(130)
        }
    }
}

/// SIGINT and SIGTERM as a call, not a handler: both are ignored, and dispatch reports them.
/// `@unchecked`: the sources are only held to keep them alive; the flag is atomic.
final class StopSignals: @unchecked Sendable {
    private let sources: [any DispatchSourceSignal]
    private let flag = ManagedAtomicFlag()

    init(onStop: @escaping @Sendable () -> Void) {
        let flag = self.flag
        sources = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                flag.set()
                onStop()
            }
            source.resume()
            return source
        }
    }

    var received: Bool { flag.isSet }
}

/// A flag set from a dispatch handler and read from a task.
final class ManagedAtomicFlag: Sendable {
    private let storage = Mutex(false)
    func set() { storage.withLock { $0 = true } }
    var isSet: Bool { storage.withLock { $0 } }
}

struct ConversionFailed: Error, CustomStringConvertible {
    let stage: String?
    let message: String
    var description: String { "conversion failed\(stage.map { " in stage \($0)" } ?? ""): \(message)" }
}

enum DaemonLauncher {
    static func run(_ configuration: Configuration) async throws {
        // Refused before the log file is opened: it may be one of the directories in question.
        let unit = ProcessInfo.processInfo.environment["HYPER2KVM_UNIT"]
        let problems = DirectoryAccessCheck.problems(configuration, unit: unit)
            + [LoopbackCheck.problem(unit: unit), GuestConverterCheck.problem(configuration)].compactMap { $0 }
        guard problems.isEmpty else {
            throw StartRefused(reasons: problems)
        }
        // A lost journal (or one another daemon holds) is refused before READY=1 as well:
        // restarting would not bring it back, so it must not become a restart loop.
        let journal: JobJournal
        do {
            try FileManager.default.createDirectory(atPath: configuration.stateDir, withIntermediateDirectories: true)
            journal = try JournalContinuity.openForWriting(configuration)
        } catch {
            throw StartRefused(reasons: ["\(error)"])
        }
        let logger = LogSetup.makeLogger(verbose: configuration.verbose, logFile: configuration.logFile)
        try await ConversionDaemon(configuration: configuration, logger: logger)
            .run(journal: journal, extraServices: HTTPEndpointService.services)
    }
}

/// The daemon cannot run with this configuration here: the message says what to change, and
/// the exit status (78, EX_CONFIG) is one the units do not restart on, so the operator reads
/// one clear refusal instead of a crash loop.
struct StartRefused: Error, CustomStringConvertible {
    let reasons: [String]
    var description: String { "refusing to start:\n" + reasons.map { "  " + $0 }.joined(separator: "\n") }

    /// Runs `body`; a configuration that cannot work is printed and ends the process with 78.
    static func exitingOnRefusal(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as StartRefused {
            FileHandle.standardError.write(Data("hyper2kvm: \(error)\n".utf8))
            throw ExitCode(DirectoryAccessCheck.exitStatus)
        } catch let error as ConfigurationErrors {
            FileHandle.standardError.write(Data("hyper2kvm: refusing to start: the configuration has errors:\n\(error)\n".utf8))
            throw ExitCode(DirectoryAccessCheck.exitStatus)
        } catch let error as InstanceError {
            FileHandle.standardError.write(Data("hyper2kvm: refusing to start: \(error)\n".utf8))
            throw ExitCode(DirectoryAccessCheck.exitStatus)
        }
    }
}
