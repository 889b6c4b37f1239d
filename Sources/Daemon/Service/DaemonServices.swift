import Foundation
import Logging
import ServiceLifecycle

/// The daemon's parts as services of one `ServiceGroup`. At SIGTERM/SIGINT the group shuts
/// them down in reverse order of `ConversionDaemon`'s list: the watcher first (it begins the
/// queue's shutdown: no new files, no new jobs or stages from then on), then the stability
/// checks, then the scheduler (running stages get `shutdown_grace_seconds`, then are
/// interrupted and resumable), and the systemd watchdog last, so systemd hears from a
/// daemon that is still draining. A service returns only when its own turn has come.

/// Feeds the queue directory's inotify events to the queue.
struct QueueWatchService: Service {
    let watcher: InotifyWatcher
    let queue: DaemonQueue
    let notifier: SystemdNotifier
    let configuration: Configuration
    let health: DaemonHealth
    let logger: Logger

    func run() async {
        health.setWatcherAlive(true)
        defer { health.setWatcherAlive(false) }
        await withGracefulShutdownHandler {
            for await event in watcher.events { await queue.handle(event) }
            health.setWatcherAlive(false)
        } onGracefulShutdown: { [watcher, queue, notifier, logger, configuration] in
            notifier.send("STOPPING=1")
            logger.notice("🛑 Shutting down gracefully: no new jobs; running stages get \(Int(configuration.shutdownGraceSeconds)) s")
            queue.beginShutdown()
            watcher.stop()
        }
        if !FileManager.default.fileExists(atPath: configuration.watchDir) {
            // The events end when the directory goes: the group then shuts down the rest.
            logger.critical("the queue directory \(configuration.watchDir) is gone; stopping")
            notifier.send("STOPPING=1")
            queue.beginShutdown()
        }
    }
}

/// Samples arriving files until they are stable and takes them in; waits without a timer
/// while nothing arrives.
struct StabilityCheckService: Service {
    let queue: DaemonQueue

    func run() async {
        // Cancelled at shutdown, so a check due seconds later does not hold the group up.
        await cancelWhenGracefulShutdown { await queue.runStabilityChecks() }
        // The checks end as soon as the watcher begins the shutdown; a service of the group
        // returns only once its own turn to stop has come.
        try? await gracefulShutdown()
    }
}

/// Runs what the queue schedules as child tasks: jobs, duplicate checks, and waits for a
/// retry or for space. At shutdown the waits are cancelled at once and the running jobs get
/// the grace period, then are cancelled (each journals `interrupted`).
struct SchedulerService: Service {
    let queue: DaemonQueue
    let grace: Duration
    let logger: Logger

    func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask {
                await withDiscardingTaskGroup { waits in
                    for await wait in queue.waits { waits.addTask(operation: wait) }
                    waits.cancelAll()
                }
            }
            await withDiscardingTaskGroup { jobs in
                for await job in queue.jobs { jobs.addTask(operation: job) }
                // Shutdown began: no job starts; those running get the grace period.
                if await !queue.drain(within: grace) {
                    for jobID in await queue.runningJobs.sorted() { logger.notice("interrupting job \(jobID)") }
                    jobs.cancelAll()
                }
            }
        }
        try? await gracefulShutdown()
    }
}

/// Tells systemd the daemon is ready, then sends `WATCHDOG=1` with the queue's status line at
/// half systemd's `WatchdogSec=`; the status comes through the queue's actor, so a wedged
/// daemon stops pinging. Without a watchdog it only waits for the shutdown.
///
/// Readiness is announced here, not before the group runs: the group traps SIGTERM before it
/// starts any service, and a SIGTERM sent on READY=1 (or on the "Daemon ready" line) before
/// that trap killed the daemon by the default action instead of stopping it cleanly.
struct WatchdogService: Service {
    let notifier: SystemdNotifier
    let queue: DaemonQueue
    let watchDir: String
    let logger: Logger

    func run() async {
        notifier.send("READY=1\n" + SystemdNotifier.status(watchDir: watchDir, await queue.statusLine()))
        logger.info("✅ Daemon ready")
        guard notifier.isActive, let interval = notifier.watchdogInterval else {
            try? await gracefulShutdown()
            return
        }
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                notifier.send("WATCHDOG=1\n" + SystemdNotifier.status(watchDir: watchDir, await queue.statusLine()))
                try await Task.sleep(for: interval / 2)
            }
        }
    }
}
