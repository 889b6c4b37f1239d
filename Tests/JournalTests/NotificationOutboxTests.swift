import Foundation
import Testing
import TestSupport
@testable import Journal

/// The outbox is written with the transition that causes it, and stall marks come once per stall.
@Suite struct NotificationOutboxTests {
    static let policy = NotificationPolicy(channels: ["webhook", "email"], onSuccess: true, onFailure: true, onStalled: true)

    @Test func publishedAndFailedTransitionsEnqueueOneRowPerChannelWithAUniqueKey() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        journal.setNotificationPolicy(Self.policy)
        let good = try StatePaths.makeJob(in: .published, journal: journal, seed: 1)
        let bad = try StatePaths.makeJob(in: .failed, journal: journal, seed: 2)
        let rows = try journal.allNotifications()
        #expect(rows.count == 4)
        #expect(Set(rows.map(\.idempotencyKey)).count == 4)
        #expect(rows.filter { $0.event.jobID == good.id }.map(\.event.event) == ["success", "success"])
        #expect(rows.filter { $0.event.jobID == bad.id }.map(\.event.event) == ["failure", "failure"])
        #expect(Set(rows.map(\.channel)) == ["webhook", "email"])
        // The key names the transition: the published row's id is in it.
        let published = try #require(try journal.history(job: good.id).last)
        #expect(rows.first?.idempotencyKey == "hyper2kvm-job\(good.id)-t\(published.id)-webhook")
        #expect(rows.allSatisfy { $0.deliveredAt == nil && $0.attempts == 0 })
    }

    @Test func nothingIsEnqueuedWithoutAPolicyOrForEventsTurnedOff() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        _ = try StatePaths.makeJob(in: .published, journal: journal, seed: 1)
        #expect(try journal.allNotifications().isEmpty)
        journal.setNotificationPolicy(NotificationPolicy(channels: ["webhook"], onSuccess: false, onFailure: true, onStalled: false))
        _ = try StatePaths.makeJob(in: .published, journal: journal, seed: 2)
        _ = try StatePaths.makeJob(in: .failed, journal: journal, seed: 3)
        #expect(try journal.allNotifications().map(\.event.event) == ["failure"])
    }

    /// A transition that is refused writes no notification: the row lives and dies with it.
    @Test func aRefusedTransitionEnqueuesNothing() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        journal.setNotificationPolicy(Self.policy)
        let job = try StatePaths.makeJob(in: .archived, journal: journal)
        #expect(throws: JournalError.self) { try journal.transition(job: job.id, to: .failed) }
        #expect(try journal.allNotifications().map(\.event.event) == ["success", "success"])
    }

    @Test func deliveryAndFailuresAreRecordedAndTheRowsSurviveReopening() throws {
        let directory = try Scratch()
        var ids: [Int64] = []
        do {
            let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
            journal.setNotificationPolicy(Self.policy)
            _ = try StatePaths.makeJob(in: .failed, journal: journal)
            ids = try journal.dueNotifications().map(\.id)
            #expect(ids.count == 2)
            try journal.recordNotificationFailure(id: ids[0], error: "HTTP 503", retryAt: Date().addingTimeInterval(3600))
            try journal.markNotificationDelivered(id: ids[1])
            #expect(try journal.dueNotifications().isEmpty)
            try journal.close()
        }
        let reopened = try JobJournal.openForWriting(stateDirectory: directory.url)
        let rows = try reopened.allNotifications()
        #expect(rows.map(\.attempts) == [1, 1])
        #expect(rows[0].lastError == "HTTP 503" && rows[0].deliveredAt == nil)
        #expect(rows[1].deliveredAt != nil)
        let due = try #require(try reopened.nextNotificationDue())
        #expect(due > Date().addingTimeInterval(3000))
        #expect(try reopened.dueNotifications(now: Date().addingTimeInterval(7200)).map(\.id) == [ids[0]])
    }

    @Test func aStageWithoutProgressIsMarkedStalledOncePerStall() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        journal.setNotificationPolicy(Self.policy)
        let job = try StatePaths.makeJob(in: .stageStarted, journal: journal)
        #expect(try journal.markStalledJobs(noProgressSince: Date().addingTimeInterval(-60)).isEmpty)
        #expect(try journal.nextStallDue(stalledAfter: 60) != nil)

        let later = Date().addingTimeInterval(120)
        let stalled = try journal.markStalledJobs(noProgressSince: later.addingTimeInterval(-60), now: later)
        #expect(stalled.map(\.id) == [job.id])
        #expect(try journal.job(job.id)?.stalledSince != nil)
        #expect(try journal.stalledJobCount() == 1)
        // Once per stall: a second check finds nothing new.
        #expect(try journal.markStalledJobs(noProgressSince: later, now: later.addingTimeInterval(60)).isEmpty)
        #expect(try journal.allNotifications().filter { $0.event.event == "stalled" }.count == 2)
        #expect(try journal.nextStallDue(stalledAfter: 60) == nil)

        // The same fraction again is no progress; a new one ends the stall.
        try journal.setProgress(job: job.id, fraction: 0.5)
        #expect(try journal.job(job.id)?.stalledSince == nil)
        try journal.setProgress(job: job.id, fraction: 0.5)
        let muchLater = later.addingTimeInterval(600)
        #expect(try journal.markStalledJobs(noProgressSince: muchLater.addingTimeInterval(-60), now: muchLater).count == 1)
        let keys = try journal.allNotifications().filter { $0.event.event == "stalled" }.map(\.idempotencyKey)
        #expect(keys.count == 4 && Set(keys).count == 4, "a second stall is a second notification: \(keys)")

        // A transition ends the stall too.
        try journal.transition(job: job.id, to: .stageCompleted, stage: "convert")
        #expect(try journal.job(job.id)?.stalledSince == nil)
        #expect(try journal.stalledJobCount() == 0)
    }
}
