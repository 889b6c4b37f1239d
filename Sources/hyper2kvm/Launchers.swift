import Daemon
import Foundation
import Stages

/// Wiring only: the logic lives in the Daemon module.
enum ConvertLauncher {
    static func run(source: String, configuration: Configuration) async throws {
        let logger = LogSetup.makeLogger(verbose: configuration.verbose, logFile: configuration.logFile)
        let bar = ProgressLine(isTerminal: isatty(STDERR_FILENO) == 1)
        let conversion = OneShotConversion(configuration: configuration, logger: logger)
        let started = ContinuousClock.now
        let outcome = try await conversion.run(source: URL(fileURLWithPath: source).standardizedFileURL) { _, fraction in
            bar.show(fraction)
        }
        bar.finish()
        let elapsed = ContinuousClock.now - started
        switch outcome {
        case .published(let path):
            print("converted \(source) → \(path) in \(elapsed.formatted(.units(allowed: [.hours, .minutes, .seconds], width: .narrow)))")
        case .failed(let stage, let message, _):
            throw ConversionFailed(stage: stage, message: message)
        case .waitingForSpace(let stage, let message, _):
            throw ConversionFailed(stage: stage, message: message)
        }
    }
}

struct ConversionFailed: Error, CustomStringConvertible {
    let stage: String?
    let message: String
    var description: String { "conversion failed\(stage.map { " in stage \($0)" } ?? ""): \(message)" }
}

enum DaemonLauncher {
    static func run(_ configuration: Configuration) async throws {
        let logger = LogSetup.makeLogger(verbose: configuration.verbose, logFile: configuration.logFile)
        try await ConversionDaemon(configuration: configuration, logger: logger).run()
    }
}
