import Foundation
import Journal
import Logging
import ServiceLifecycle

/// Delivers the journal's notification outbox, at least once: every undelivered row is sent,
/// and marked delivered only after its receiver accepted it, so a crash between the two
/// sends it again after the restart (the receiver drops the copy by its idempotency key).
/// A failure is retried with exponential backoff (1 s, 2 s, 4 s … up to `maximumBackoff`),
/// for as long as it takes: a notification is never dropped.
struct NotificationDeliveryService: Service {
    let journal: JobJournal
    let sender: any NotificationSending
    let wakeup: Wakeup
    let logger: Logger
    var initialBackoff: Duration = .seconds(1)
    var maximumBackoff: Duration = .seconds(300)

    func run() async {
        // At shutdown (its turn comes after the scheduler's, so the last transitions are in),
        // one more pass sends what is due; the rest waits in the journal for the next start.
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await deliverDue()
                await waitForWork()
            }
        }
        await deliverDue()
    }

    /// Sends every row that is due, oldest first.
    func deliverDue() async {
        let due: [OutboxNotification]
        do {
            due = try journal.dueNotifications()
        } catch {
            logger.error("notifications: cannot read the outbox: \(error)")
            return
        }
        for notification in due {
            await deliver(notification)
        }
    }

    private func deliver(_ notification: OutboxNotification) async {
        let message = NotificationMessage(notification)
        do {
            try await sender.send(message, channel: notification.channel)
        } catch {
            let attempt = notification.attempts + 1
            let delay = backoff(afterAttempt: attempt)
            let text = (error as? DeliveryFailure)?.description ?? "\(type(of: error))"
            logger.warning("notification \(notification.idempotencyKey) (\(notification.channel)) not delivered, attempt \(attempt): \(text); next try in \(delay)")
            try? journal.recordNotificationFailure(id: notification.id, error: text,
                                                   retryAt: Date().addingTimeInterval(delay.seconds))
            return
        }
        do {
            try journal.markNotificationDelivered(id: notification.id)
            logger.info("notification \(notification.idempotencyKey) delivered (\(notification.channel))")
        } catch {
            // Sent but not marked: it goes again, and the key lets the receiver drop it.
            logger.error("notification \(notification.idempotencyKey) delivered but not marked in the journal: \(error)")
        }
    }

    func backoff(afterAttempt attempt: Int) -> Duration {
        var delay = initialBackoff
        for _ in 1..<max(1, min(attempt, 30)) where delay < maximumBackoff { delay *= 2 }
        return min(delay, maximumBackoff)
    }

    /// Until the next retry is due or a transition enqueues a row; with nothing pending, no
    /// timer at all (an idle daemon never wakes).
    private func waitForWork() async {
        let next = (try? journal.nextNotificationDue()).flatMap { $0 }
        await wakeup.wait(until: next)
    }
}

extension Wakeup {
    /// Returns at `deadline` (nil: never) or at a signal, whichever comes first.
    func wait(until deadline: Date?) async {
        guard let deadline else { return await wait() }
        let seconds = max(0.05, deadline.timeIntervalSinceNow)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.wait() }
            group.addTask { try? await Task.sleep(for: .milliseconds(Int(min(seconds, 86_400) * 1000))) }
            await group.next()
            group.cancelAll()
        }
    }
}

/// Finds running stages that made no progress for `stalled_after_seconds`, marks them stalled
/// in the journal (with their notification, in the same transaction) and logs each once.
struct StallWatchService: Service {
    let journal: JobJournal
    let stalledAfter: TimeInterval
    let wakeup: Wakeup
    let logger: Logger

    func run() async {
        // Wakes when the earliest running stage would become stalled, or when a stage starts;
        // with no stage running it waits without a timer.
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                check()
                let next = (try? journal.nextStallDue(stalledAfter: stalledAfter)).flatMap { $0 }
                // A little past the limit, so the stage is over it when checked.
                await wakeup.wait(until: next?.addingTimeInterval(0.05))
            }
        }
    }

    func check(now: Date = Date()) {
        do {
            for job in try journal.markStalledJobs(noProgressSince: now.addingTimeInterval(-stalledAfter), now: now) {
                logger.warning("job \(job.id) stalled: stage \(job.stage ?? "?") made no progress for \(Int(stalledAfter)) s")
            }
        } catch {
            logger.error("stall check failed: \(error)")
        }
    }
}

/// The daemon's notification parts: the journal's outbox policy (set before recovery, so a
/// job that fails while being recovered notifies too), the delivery service and the stall watch.
struct NotificationOutboxSetup {
    let senders: NotificationSenders
    let deliveryService: NotificationDeliveryService
    let stallWatch: StallWatchService

    init(configuration: Configuration, journal: JobJournal, logger: Logger) {
        let settings = configuration.notifications
        let wakeup = Wakeup()
        senders = NotificationSenders(settings: settings)
        journal.setNotificationPolicy(settings.policy) { wakeup.signal() }
        deliveryService = NotificationDeliveryService(journal: journal, sender: senders, wakeup: wakeup, logger: logger)
        let stageStarted = Wakeup()
        journal.setStageStartObserver { stageStarted.signal() }
        stallWatch = StallWatchService(journal: journal, stalledAfter: configuration.stalledAfterSeconds,
                                       wakeup: stageStarted, logger: logger)
        if settings.enabled {
            var channels: [String] = []
            if let webhook = settings.webhookDisplay { channels.append("webhook \(settings.webhookType.rawValue) \(webhook)") }
            if settings.emailEnabled { channels.append("e-mail via \(settings.emailSMTPHost ?? "?"):\(settings.emailSMTPPort)") }
            logger.info("🔔 Notifications: \(channels.joined(separator: ", ")) (success \(settings.onSuccess), failure \(settings.onFailure), stalled \(settings.onStalled))")
        }
    }
}
