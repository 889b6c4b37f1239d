import Foundation
import Journal
import Logging
import ServiceLifecycle
import Stages
import SystemSupport

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

    /// - Parameter journal: opened (and locked) by the launcher through `JournalContinuity`, to
    ///   refuse a lost or held journal before READY=1. Opening it here again would run the
    ///   integrity check twice, and that check is most of a restart's time (it reads the whole
    ///   database).
    /// - Parameter extraServices: more services for the group (the HTTP endpoint); they stop
    ///   after the queue has drained, just before the watchdog.
    public func run(journal: JobJournal, extraServices: DaemonExtraServices = { _ in [] }) async throws {
        defer { try? journal.close() }
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
        let crashRecord = CrashRecordFile(stateDirectory: c.stateDir)
        let lastCrash = crashRecord.read(previousRun: try journal.latestDaemonRun()?.id)
        let run = try journal.recordDaemonStart(pid: getpid(), config: c.sources, watchDir: c.watchDir, outputDir: c.outputDir)
        try crashRecord.arm(run: run)
        if let lastCrash {
            logger.warning("the previous run (\(lastCrash.run)) died of \(lastCrash.signalName) at \(Timestamp.format(lastCrash.time)); the jobs it was converting are checked for poison")
        }
        let watcher = try InotifyWatcher(directory: c.watchDir, logger: logger)
        let queue = DaemonQueue(configuration: c, journal: journal, logger: logger)

        logger.info("👀 Watching: \(c.watchDir)")
        logger.info("📤 Output: \(c.outputDir)")
        logger.info("⚙️  Workers: \(c.maxConcurrent) (journal in \(c.stateDir))")
        let notifier = SystemdNotifier()
        let outbox = NotificationOutboxSetup(configuration: c, journal: journal, logger: logger)
        let health = DaemonHealth()
        try await queue.recoverInterruptedJobs(crash: lastCrash)
        // Watching starts before the scan, so a file dropped in between is not missed.
        watcher.start()
        await queue.rescan(reason: "start")

        // Shut down in reverse order: the watcher first, the watchdog last (see DaemonServices).
        let extra = extraServices(DaemonContext(configuration: c, journal: journal, health: health, logger: logger))
        // Stopped in reverse order: the outbox delivers a shutdown's last transitions, and
        // the endpoint answers until the jobs have drained.
        let services: [any Service] = [
            WatchdogService(notifier: notifier, queue: queue, watchDir: c.watchDir, logger: logger),
            outbox.deliveryService, outbox.stallWatch,
        ] + extra + [
            SchedulerService(queue: queue, grace: .seconds(c.shutdownGraceSeconds), logger: logger),
            StabilityCheckService(queue: queue),
            QueueWatchService(watcher: watcher, queue: queue, notifier: notifier, configuration: c, health: health, logger: logger),
        ]
        var group = ServiceGroupConfiguration(
            services: services.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup) },
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // Below systemd's TimeoutStopSec= (90 s for the default 60 s grace): past it, everything
        // still running is cancelled, and a cancelled stage is journaled interrupted.
        group.maximumGracefulShutdownDuration = .seconds(c.shutdownGraceSeconds) + Self.shutdownMargin
        do {
            try await ServiceGroup(configuration: group).run()
        } catch {
            await outbox.senders.shutdown()
            throw error
        }
        await outbox.senders.shutdown()
        try journal.recordDaemonStop(run: run)
        logger.notice("✅ Daemon shutdown complete")
    }

    /// Time allowed past the grace period for interrupted stages to stop their tools and
    /// journal the interruption.
    static let shutdownMargin: Duration = .seconds(10)
}
