import Foundation
import Journal
import Logging
import Synchronization
import Testing
import TestSupport
@testable import Daemon

/// The delivery service against a real journal, a real webhook receiver and a real SMTP sink
/// (Tests/Fixtures), in this process: quick, and each retry visible.
@Suite(.serialized) struct NotificationDeliveryTests {
    static let token = "T111/B222/SECRET-TOKEN-abc"
    static let password = "SECRET-smtp-pass"

    final class LogLines: LogHandler, @unchecked Sendable {
        let lines = Mutex<[String]>([])
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) { lines.withLock { $0.append(event.message.description) } }
        var all: [String] { lines.withLock { $0 } }
    }

    func settings(webhookPort: Int, smtpPort: Int, type: NotificationSettings.WebhookType = .generic) -> NotificationSettings {
        var settings = NotificationSettings()
        settings.enabled = true
        settings.onSuccess = true
        settings.webhookURL = Secret("http://127.0.0.1:\(webhookPort)/hook/\(Self.token)?sig=\(Self.token)")
        settings.webhookType = type
        settings.emailEnabled = true
        settings.emailSMTPHost = "127.0.0.1"
        settings.emailSMTPPort = smtpPort
        settings.emailFrom = "h2k@example.com"
        settings.emailTo = ["ops@example.com", "oncall@example.com"]
        settings.emailUsername = "h2k"
        settings.emailPassword = Secret(Self.password)
        return settings
    }

    /// The receiver is down for the first attempts, then back: every notification arrives,
    /// once, and the retries are in the journal and the log, without the token or password.
    @Test func everyNotificationArrivesOnceAfterTheReceiverComesBack() async throws {
        let scratch = try Scratch("notify-delivery")
        let webhook = FixtureServer(.webhook, scratch: scratch)
        let smtp = FixtureServer(.smtp, scratch: scratch, extra: ["--user", "h2k", "--password", Self.password])
        try await webhook.start()
        await webhook.stop()  // Its port is known; nothing listens on it now.
        try await smtp.start()
        defer { Task { [webhook, smtp] in await webhook.stop(); await smtp.stop() } }

        let journal = try JobJournal.openForWriting(stateDirectory: scratch.url.appendingPathComponent("state"))
        let config = settings(webhookPort: webhook.port, smtpPort: smtp.port)
        journal.setNotificationPolicy(config.policy)
        for (seed, target) in [(1, JobState.published), (2, .failed), (3, .published)] {
            try drive(journal, seed: UInt64(seed), to: target)
        }
        let expected = Set(try journal.allNotifications().map(\.idempotencyKey))
        #expect(expected.count == 6)

        let log = LogLines()
        let senders = NotificationSenders(settings: config)
        let service = NotificationDeliveryService(journal: journal, sender: senders, wakeup: Wakeup(),
                                                  logger: Logger(label: "test") { _ in log },
                                                  initialBackoff: .milliseconds(200), maximumBackoff: .seconds(1))
        let started = Date()
        // Down: the webhook rows fail and are rescheduled; the e-mails go through.
        for _ in 0..<3 {
            await service.deliverDue()
            try await Task.sleep(for: .milliseconds(300))
        }
        #expect(Set(smtp.keys).count == 3)
        let pending = try journal.allNotifications().filter { $0.deliveredAt == nil }
        #expect(pending.count == 3 && pending.allSatisfy { $0.channel == "webhook" && $0.attempts >= 2 })
        #expect(pending.allSatisfy { $0.lastError?.contains("127.0.0.1") == true })

        try await webhook.start()
        var delivered = false
        for _ in 0..<100 where !delivered {
            await service.deliverDue()
            delivered = try journal.allNotifications().allSatisfy { $0.deliveredAt != nil }
            if !delivered { try await Task.sleep(for: .milliseconds(200)) }
        }
        await senders.shutdown()
        let rows = try journal.allNotifications()
        #expect(delivered, "\(rows)")
        #expect(Set(webhook.keys + smtp.keys) == expected)
        #expect(webhook.keys.count == 3 && smtp.keys.count == 3, "each key once")
        #expect(webhook.duplicates == 0 && smtp.duplicates == 0, "nothing is sent twice in a normal run")
        for entry in webhook.entries { #expect(entry["key"] as? String == entry["body_key"] as? String) }
        for entry in smtp.entries {
            #expect(entry["auth"] as? String == "h2k")
            #expect((entry["to"] as? [String]) == ["ops@example.com", "oncall@example.com"])
        }
        let stored = try journal.allNotifications().compactMap(\.lastError) + log.all
        #expect(log.all.contains { $0.contains("not delivered, attempt") })
        for text in stored { #expect(!text.contains("SECRET"), "\(text)") }
        print("notify-delivery: 6 notifications, webhook down ~1 s, all delivered in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
    }

    @Test func slackAndDiscordBodies() async throws {
        let scratch = try Scratch("notify-formats")
        let webhook = FixtureServer(.webhook, scratch: scratch)
        try await webhook.start()
        defer { Task { [webhook] in await webhook.stop() } }
        for type in [NotificationSettings.WebhookType.slack, .discord] {
            var config = settings(webhookPort: webhook.port, smtpPort: 1, type: type)
            config.emailEnabled = false
            let senders = NotificationSenders(settings: config)
            let event = NotificationEvent(event: "success", jobID: 1, sourcePath: "/q/a.vmdk", vmName: "a", state: "published",
                                          stage: nil, detail: "/out/a", at: "2026-12-06T21:00:00.000Z")
            try await senders.send(NotificationMessage(key: "k-\(type)", event: event), channel: "webhook")
            await senders.shutdown()
        }
        let bodies = webhook.entries.compactMap { $0["body"] as? [String: String] }
        #expect(bodies.map { Array($0.keys) } == [["text"], ["content"]])
        #expect(webhook.entries.map { $0["body_key"] as? String } == ["k-slack", "k-discord"])
    }

    @Test func aStageWithoutProgressIsReportedStalledInStatusAndNotifiedOnce() async throws {
        let scratch = try Scratch("notify-stall")
        let journal = try JobJournal.openForWriting(stateDirectory: scratch.url.appendingPathComponent("state"))
        journal.setNotificationPolicy(NotificationPolicy(channels: ["webhook"], onSuccess: false, onFailure: true, onStalled: true))
        let wakeup = Wakeup()
        journal.setStageStartObserver { wakeup.signal() }
        let watch = StallWatchService(journal: journal, stalledAfter: 0.5, wakeup: wakeup, logger: Logger(label: "test"))
        let task = Task { await watch.run() }
        defer { task.cancel() }
        let job = try journal.createJob(NewJob(sourcePath: "/q/slow.vmdk", sourceKind: "vmdk", identity: identity(9)))
        for (state, stage) in [(JobState.stable, nil), (.claimed, nil), (.stageStarted, "convert")] as [(JobState, String?)] {
            try journal.transition(job: job.id, to: state, stage: stage)
        }
        // Generous bounds: the watch runs on this process's cooperative pool, which other
        // suites' blocking waits can hold for seconds on a loaded host (CI: 6 s to the mark).
        #expect(await waitUntil(60) { (try? journal.job(job.id)?.stalledSince) != nil })
        try await Task.sleep(for: .seconds(1))
        #expect(try journal.allNotifications().map(\.event.event) == ["stalled"], "once per stall")

        let jobs = try journal.allJobs()
        let text = try JournalReports.status(jobs, daemon: nil, json: false)
        #expect(text.contains("(1 stalled)") && text.contains("STALLED: stage convert"), "\(text)")
        let document = try JSONDecoder().decode(JournalReports.StatusDocument.self,
                                                from: Data(try JournalReports.status(jobs, daemon: nil, json: true).utf8))
        #expect(document.stalled == 1 && document.jobs.first?.stalledSince != nil)

        // Progress ends the stall; the watch, asleep without a timer, times the stage again.
        try journal.setProgress(job: job.id, fraction: 0.25)
        #expect(try journal.job(job.id)?.stalledSince == nil)
        #expect(await waitUntil(60) { (try? journal.job(job.id)?.stalledSince) != nil })
        #expect(try journal.allNotifications().map(\.event.event) == ["stalled", "stalled"])
    }

    func identity(_ seed: UInt64) -> SourceIdentity {
        SourceIdentity(device: 2049, inode: 5000 + seed, size: 4096, mtimeNanoseconds: 1, ctimeNanoseconds: 1)
    }

    func drive(_ journal: JobJournal, seed: UInt64, to target: JobState) throws {
        let job = try journal.createJob(NewJob(sourcePath: "/q/vm\(seed).vmdk", sourceKind: "vmdk", identity: identity(seed)))
        try journal.transition(job: job.id, to: .stable)
        try journal.transition(job: job.id, to: .claimed)
        try journal.transition(job: job.id, to: .stageStarted, stage: "convert")
        if target == .failed {
            try journal.transition(job: job.id, to: .stageFailed, stage: "convert", detail: "qemu-img failed")
            try journal.transition(job: job.id, to: .failed, detail: "/q/vm\(seed).vmdk: qemu-img failed")
        } else {
            try journal.completeStage(job: job.id, stage: "convert", artifacts: [], detail: nil)
            try journal.transition(job: job.id, to: .published, detail: "/out/vm\(seed)")
        }
    }
}
