import Foundation
import Journal
import Logging
import Stages

/// `command: daemon`: watches the queue directory, takes each file once it is complete,
/// converts up to `max_concurrent` jobs at once through the journal, archives the source
/// to `.processed/<date>/` or `.errors/` (with `<name>.error.json`), and on restart resumes
/// every job that was running. SIGTERM/SIGINT stop it cleanly.
public struct ConversionDaemon: Sendable {
    let configuration: Configuration
    let logger: Logger

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    public func run() async throws {
        let c = configuration
        for directory in [c.watchDir, c.outputDir, c.workDir, c.stateDir] {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw StageError(.ioFailed, file: directory, "cannot create directory: \(error.localizedDescription)")
            }
        }
        let journal = try JobJournal.openForWriting(stateDirectory: URL(fileURLWithPath: c.stateDir))
        defer { try? journal.close() }
        let watcher = try InotifyWatcher(directory: c.watchDir, logger: logger)
        let queue = DaemonQueue(configuration: c, journal: journal, logger: logger)

        logger.info("watching \(c.watchDir); output \(c.outputDir); state \(c.stateDir); max_concurrent \(c.maxConcurrent)")
        try await queue.recoverInterruptedJobs()
        watcher.start()
        await queue.rescan(reason: "start")

        let signals = ShutdownSignals()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await event in watcher.events {
                    await queue.handle(event)
                }
            }
            group.addTask { await queue.runStabilityChecks() }
            group.addTask {
                let signal = await signals.next()
                logger.notice("received \(signal), shutting down: no new jobs; running stages get \(Int(c.shutdownGraceSeconds)) s")
                watcher.stop()
                await queue.shutdown(grace: .seconds(c.shutdownGraceSeconds))
            }
            await group.next()
            group.cancelAll()
        }
        await queue.waitForRunningJobs()
        logger.notice("daemon stopped")
    }
}

/// Delivers SIGTERM / SIGINT as async values instead of running code in a signal handler.
/// `@unchecked`: the dispatch sources are only held to keep them alive; nothing touches
/// them after `init`.
final class ShutdownSignals: @unchecked Sendable {
    private let stream: AsyncStream<String>
    private let sources: [any DispatchSourceSignal]

    init() {
        var continuation: AsyncStream<String>.Continuation!
        stream = AsyncStream { continuation = $0 }
        let output = continuation!
        var sources: [any DispatchSourceSignal] = []
        for (number, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { output.yield(name) }
            source.resume()
            sources.append(source)
        }
        self.sources = sources
    }

    func next() async -> String {
        for await name in stream { return name }
        return "end of signals"
    }
}
