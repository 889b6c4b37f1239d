import Foundation
import GRDB
import Synchronization
import SystemSupport

/// Which events become notifications and on which channels. Set on the writing journal by
/// the daemon (`JobJournal.setNotificationPolicy`); with no channel nothing is enqueued.
public struct NotificationPolicy: Sendable, Equatable {
    /// Channel names, e.g. "webhook", "email": one outbox row per channel and event.
    public var channels: [String]
    public var onSuccess: Bool
    public var onFailure: Bool
    public var onStalled: Bool

    public init(channels: [String], onSuccess: Bool, onFailure: Bool, onStalled: Bool) {
        self.channels = channels
        self.onSuccess = onSuccess
        self.onFailure = onFailure
        self.onStalled = onStalled
    }

    public static let off = NotificationPolicy(channels: [], onSuccess: false, onFailure: false, onStalled: false)
}

/// What happened, as the outbox stores it (`payload`) and every channel renders it.
public struct NotificationEvent: Codable, Sendable, Hashable {
    /// "success", "failure" or "stalled".
    public var event: String
    public var jobID: Int64
    public var sourcePath: String
    public var vmName: String?
    public var state: String
    public var stage: String?
    /// The transition's detail: the output directory on success, the error on failure.
    public var detail: String?
    /// When the transition (or the stall) was committed.
    public var at: String

    public init(event: String, jobID: Int64, sourcePath: String, vmName: String?, state: String,
                stage: String?, detail: String?, at: String) {
        self.event = event
        self.jobID = jobID
        self.sourcePath = sourcePath
        self.vmName = vmName
        self.state = state
        self.stage = stage
        self.detail = detail
        self.at = at
    }
}

/// One row of the outbox.
public struct OutboxNotification: Sendable, Hashable {
    public var id: Int64
    public var idempotencyKey: String
    public var channel: String
    public var event: NotificationEvent
    public var attempts: Int
    public var createdAt: String
    public var deliveredAt: String?
    public var lastError: String?
}

/// The policy in force and whom to tell that rows were committed, shared by the journal's writers.
final class OutboxHook: Sendable {
    private struct State {
        var policy = NotificationPolicy.off
        var onEnqueue: (@Sendable () -> Void)?
        var onStageStarted: (@Sendable () -> Void)?
        var enqueuedSinceSignal = false
    }

    private let state = Mutex(State())

    var policy: NotificationPolicy { state.withLock { $0.policy } }

    func set(_ policy: NotificationPolicy, onEnqueue: (@Sendable () -> Void)?) {
        state.withLock {
            $0.policy = policy
            $0.onEnqueue = onEnqueue
        }
    }

    func setStageStartObserver(_ observer: (@Sendable () -> Void)?) {
        state.withLock { $0.onStageStarted = observer }
    }

    /// Called after a `stage-started` commit: the stall watch has a stage to time.
    func signalStageStarted() {
        state.withLock { $0.onStageStarted }?()
    }

    func noteEnqueued() { state.withLock { $0.enqueuedSinceSignal = true } }

    /// Called after a commit: wakes the delivery service if that commit enqueued something.
    func signalIfEnqueued() {
        let hook = state.withLock { state -> (@Sendable () -> Void)? in
            guard state.enqueuedSinceSignal else { return nil }
            state.enqueuedSinceSignal = false
            return state.onEnqueue
        }
        hook?()
    }
}

extension JobJournal {
    /// From now on, `published` and `failed` transitions (and stalls) enqueue notifications
    /// for `policy`'s channels in their own transaction; `onEnqueue` runs after each such commit.
    public func setNotificationPolicy(_ policy: NotificationPolicy, onEnqueue: (@Sendable () -> Void)? = nil) {
        outboxHook.set(policy, onEnqueue: onEnqueue)
    }

    /// `observer` runs after each `stage-started` commit, so the stall watch can sleep
    /// without a timer while no stage runs.
    public func setStageStartObserver(_ observer: (@Sendable () -> Void)?) {
        outboxHook.setStageStartObserver(observer)
    }

    /// Inside a transition's transaction: the notification rows that transition causes.
    func enqueueNotifications(_ db: Database, for record: TransitionRecord) throws {
        let policy = outboxHook.policy
        let event: String
        switch record.to {
        case .published where policy.onSuccess: event = "success"
        case .failed where policy.onFailure: event = "failure"
        default: return
        }
        // The transition's id is unique in the journal, so the key names this one event.
        try enqueue(db, event: event, job: record.jobID, stage: record.stage, detail: record.detail,
                    at: record.at, keyBase: "hyper2kvm-job\(record.jobID)-t\(record.id)", policy: policy)
    }

    func enqueue(_ db: Database, event: String, job: Int64, stage: String?, detail: String?, at: String,
                 keyBase: String, policy: NotificationPolicy) throws {
        guard !policy.channels.isEmpty,
              let row = try Row.fetchOne(db, sql: "SELECT source_path, vm_name, state FROM jobs WHERE id = ?", arguments: [job])
        else { return }
        let facts = NotificationEvent(event: event, jobID: job, sourcePath: row["source_path"], vmName: row["vm_name"],
                                      state: row["state"], stage: stage, detail: detail, at: at)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let payload = String(decoding: try encoder.encode(facts), as: UTF8.self)
        for channel in policy.channels {
            try db.cachedStatement(sql: """
                INSERT OR IGNORE INTO notification_outbox
                    (idempotency_key, job_id, channel, event, payload, created_at, next_attempt_at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """).execute(arguments: ["\(keyBase)-\(channel)", job, channel, event, payload, at, at])
        }
        outboxHook.noteEnqueued()
    }

    /// Undelivered rows whose next attempt is due at `now`, oldest first.
    public func dueNotifications(now: Date = Date(), limit: Int = 32) throws -> [OutboxNotification] {
        try readSnapshot { db in
            try Row.fetchAll(db, sql: """
                SELECT * FROM notification_outbox WHERE delivered_at IS NULL AND next_attempt_at <= ?
                ORDER BY id LIMIT ?
                """, arguments: [Timestamp.format(now), limit]).map(Self.outboxNotification)
        }
    }

    /// When the earliest undelivered row is due, or nil when everything was delivered.
    public func nextNotificationDue() throws -> Date? {
        try readSnapshot { db in
            try String.fetchOne(db, sql: "SELECT min(next_attempt_at) FROM notification_outbox WHERE delivered_at IS NULL")
                .flatMap(Timestamp.parse)
        }
    }

    /// Every outbox row, oldest first (for tests and reports).
    public func allNotifications() throws -> [OutboxNotification] {
        try readSnapshot { db in
            try Row.fetchAll(db, sql: "SELECT * FROM notification_outbox ORDER BY id").map(Self.outboxNotification)
        }
    }

    public func markNotificationDelivered(id: Int64, at date: Date = Date()) throws {
        try writeTransaction { db in
            try db.execute(sql: "UPDATE notification_outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?",
                           arguments: [Timestamp.format(date), id])
        }
    }

    /// Records a failed attempt; `error` must already be free of secrets.
    public func recordNotificationFailure(id: Int64, error: String, retryAt: Date) throws {
        try writeTransaction { db in
            try db.execute(sql: """
                UPDATE notification_outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?
                """, arguments: [error, Timestamp.format(retryAt), id])
        }
    }

    private static func outboxNotification(_ row: Row) throws -> OutboxNotification {
        let payload: String = row["payload"]
        let event = try JSONDecoder().decode(NotificationEvent.self, from: Data(payload.utf8))
        return OutboxNotification(id: row["id"], idempotencyKey: row["idempotency_key"], channel: row["channel"],
                                  event: event, attempts: row["attempts"], createdAt: row["created_at"],
                                  deliveredAt: row["delivered_at"], lastError: row["last_error"])
    }
}
