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
        logger.info("🚀 Starting daemon mode (hyper2kvm \(Hyper2KVMVersion.current), pid \(getpid()))")
        for (key, directory) in [("watch_dir", c.watchDir), ("output_dir", c.outputDir), ("workdir", c.workDir), ("state_dir", c.stateDir)] {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw StageError(.ioFailed, file: directory, "\(key): cannot create directory: \(error.localizedDescription)")
            }
            guard access(directory, W_OK | X_OK) == 0 else {
                throw StageError(.ioFailed, file: directory, "\(key): not writable by uid \(getuid()): \(String(cString: strerror(errno)))")
            }
        }
        let journal = try JournalContinuity.openForWriting(c)
        defer { try? journal.close() }
        let crashRecord = CrashRecordFile(stateDirectory: c.stateDir)
        let lastCrash = crashRecord.read(previousRun: try journal.latestDaemonRun()?.id)
        let run = try journal.recordDaemonStart(pid: getpid(), config: c.sources, watchDir: c.watchDir, outputDir: c.outputDir)
        try crashRecord.arm(run: run)
        if let lastCrash {
            logger.warning("the previous run (\(lastCrash.run)) died of \(lastCrash.signalName) at \(JournalTimestamp.format(lastCrash.time)); the jobs it was converting are checked for poison")
        }
        let watcher = try InotifyWatcher(directory: c.watchDir, logger: logger)
        let queue = DaemonQueue(configuration: c, journal: journal, logger: logger)

        logger.info("👀 Watching: \(c.watchDir)")
        logger.info("📤 Output: \(c.outputDir)")
        logger.info("⚙️  Workers: \(c.maxConcurrent) (journal in \(c.stateDir))")
        let notifier = SystemdNotifier()
        let signals = ShutdownSignals()
        try await queue.recoverInterruptedJobs(crash: lastCrash)
        watcher.start()
        await queue.rescan(reason: "start")
        notifier.send("READY=1\n" + SystemdNotifier.status(watchDir: c.watchDir, await queue.statusLine()))
        logger.info("✅ Daemon ready")

        // Runs until a signal has been handled (or the queue directory vanished); the other
        // tasks end or are cancelled then.
        enum Ended { case watcher, checks, watchdog, signal }
        await withTaskGroup(of: Ended.self) { group in
            group.addTask {
                // The ping goes through the queue's actor, so a wedged daemon stops pinging.
                guard notifier.isActive, let interval = notifier.watchdogInterval else { return .watchdog }
                while !Task.isCancelled {
                    let status = await queue.statusLine()
                    notifier.send("WATCHDOG=1\n" + SystemdNotifier.status(watchDir: c.watchDir, status))
                    try? await Task.sleep(for: interval / 2)
                }
                return .watchdog
            }
            group.addTask {
                for await event in watcher.events {
                    await queue.handle(event)
                }
                return .watcher
            }
            group.addTask {
                await queue.runStabilityChecks()
                return .checks
            }
            group.addTask {
                let signal = await signals.next()
                notifier.send("STOPPING=1")
                logger.notice("🛑 Received \(signal), shutting down gracefully: no new jobs; running stages get \(Int(c.shutdownGraceSeconds)) s")
                watcher.stop()
                await queue.shutdown(grace: .seconds(c.shutdownGraceSeconds))
                return .signal
            }
            while let ended = await group.next() {
                if ended == .signal { break }
                if ended == .watcher && !FileManager.default.fileExists(atPath: c.watchDir) {
                    logger.critical("the queue directory \(c.watchDir) is gone; stopping")
                    await queue.shutdown(grace: .seconds(c.shutdownGraceSeconds))
                    break
                }
            }
            group.cancelAll()
        }
        await queue.waitForRunningJobs()
        try journal.recordDaemonStop(run: run)
        logger.notice("✅ Daemon shutdown complete")
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
