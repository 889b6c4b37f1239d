import Foundation
import Journal
import Stages
import Testing
import TestSupport
@testable import Daemon

/// `JobLifecycle` on its own: no disk, no processes, no sleeps. Fake stages
/// (`FakePipeline`), an in-memory journal that refuses illegal moves (`MemoryJournal`) and
/// an instant that moves only when told (`TestInstant`).
@Suite("JobLifecycle")
struct JobLifecycleTests {
    typealias Policy = TestLifecycle.Policy
    static let queue = Policy(retry: .init(enabled: true, maxRetries: 3, retryDelaySeconds: 300, backoffMultiplier: 2), fromQueue: true)
    static let noRetry = Policy(retry: .init(enabled: false, maxRetries: 3, retryDelaySeconds: 300, backoffMultiplier: 2), fromQueue: true)

    static func claimed(_ policy: Policy = queue) -> (TestLifecycle, MemoryJournal) {
        var lifecycle = TestLifecycle(policy: policy)
        var journal = MemoryJournal()
        journal.apply(lifecycle.handle(.claim(detail: "found in /q", claimant: "pid 1"), now: .zero))
        return (lifecycle, journal)
    }

    // MARK: - Intake and the way through

    @Test func aClaimTakesANewFileToClaimedAndQueuesIt() {
        var lifecycle = TestLifecycle(policy: Self.queue)
        let actions = lifecycle.handle(.claim(detail: "found in /q", claimant: "pid 1"), now: .zero)
        #expect(actions == [.journal(.discovered, stage: nil, detail: "found in /q"),
                            .journal(.stable, stage: nil, detail: "complete on arrival"),
                            .journal(.claimed, stage: nil, detail: "pid 1"), .enqueue(alone: false)])
        #expect(lifecycle.handle(.claim(detail: "again", claimant: "pid 1"), now: .zero).isEmpty, "a job is claimed once")
    }

    @Test func aDuplicateIsJournaledAndArchivedNotConverted() {
        var lifecycle = TestLifecycle(policy: Self.queue)
        let actions = lifecycle.handle(.duplicate(detail: "same as job 1"), now: .zero)
        #expect(actions == [.journal(.discovered, stage: nil, detail: "found in the queue"),
                            .journal(.duplicate, stage: nil, detail: "same as job 1"), .archive(.processed)])
        #expect(lifecycle.state?.isTerminal == true)
    }

    @Test func everyStageRunsInOrderThenTheJobIsPublishedAndArchived() {
        var (lifecycle, journal) = Self.claimed()
        let pipeline = FakePipeline([("probe", .succeeds), ("convert", .succeeds), ("fix", .skipped("--no-fix")), ("publish", .succeeds)])
        let actions = pipeline.run(&lifecycle, journal: &journal)
        #expect(actions.journaled == [.stageStarted, .stageCompleted, .stageStarted, .stageCompleted, .stageSkipped,
                                      .stageStarted, .stageCompleted, .published])
        #expect(actions.contains(.runStage("probe")) && !actions.contains(.runStage("fix")))
        #expect(actions.contains(.journal(.stageSkipped, stage: "fix", detail: "--no-fix")))
        #expect(Array(actions.suffix(5)) == [.recordOutput("/out/vm"), .journal(.published, stage: nil, detail: "/out/vm"),
                                             .discardWork, .archive(.processed), .end(.published(outputPath: "/out/vm"))])
        let archived = lifecycle.handle(.sourceArchived(detail: "/q/.processed/vm.vmdk"), now: .zero)
        journal.apply(archived)
        #expect(archived == [.journal(.archived, stage: nil, detail: "/q/.processed/vm.vmdk")])
        #expect(journal.state == .archived)
    }

    @Test func aOneShotJobIsPublishedAndItsSourceLeftAlone() {
        var (lifecycle, journal) = Self.claimed(Policy(retry: Self.queue.retry, fromQueue: false))
        let actions = FakePipeline.allSucceed().run(&lifecycle, journal: &journal)
        #expect(actions.ending == .published(outputPath: "/out/vm"))
        #expect(!actions.contains { if case .archive = $0 { true } else { false } })
    }

    @Test func aStageTellsTheSourceDigestAndItIsRecorded() {
        var (lifecycle, journal) = Self.claimed()
        journal.apply(lifecycle.handle(.nextStage("convert", skipReason: nil, detail: "attempt 1"), now: .zero))
        let actions = lifecycle.handle(.stageFinished("convert", detail: "2 disks", .init(sourceDigest: "sha256:ab")), now: .zero)
        #expect(actions == [.journal(.stageCompleted, stage: "convert", detail: "2 disks"), .recordSourceDigest("sha256:ab")])
    }

    @Test func eventsOutOfPlaceAreIgnored() {
        var (lifecycle, _) = Self.claimed()
        #expect(lifecycle.handle(.stageFinished("convert", detail: "", .init()), now: .zero).isEmpty)
        #expect(lifecycle.handle(.stageFailed("convert", code: .toolFailed, message: "x", need: nil), now: .zero).isEmpty)
        #expect(lifecycle.handle(.sourceArchived(detail: "x"), now: .zero).isEmpty)
        #expect(lifecycle.handle(.retryDue, now: .zero).isEmpty)
        #expect(lifecycle.handle(.spaceReturned, now: .zero).isEmpty)
        #expect(lifecycle.state == .claimed)
    }

    // MARK: - Retry and backoff

    @Test func aFailureThatMayPassIsRetriedAfterExactlyTheBackoffDelays() {
        var (lifecycle, journal) = Self.claimed()
        var now = TestInstant(offset: .seconds(1000))
        let failing = FakePipeline([("probe", .succeeds), ("convert", .fails(.toolFailed)), ("publish", .succeeds)])
        for (retry, delay) in [(1, 300), (2, 600), (3, 1200)] {
            let actions = FakePipeline(failing.steps.map { ($0.name, $0.step) }, alreadyDone: retry == 1 ? 0 : 1)
                .run(&lifecycle, journal: &journal, now: now)
            #expect(actions.contains(.journal(.retrying, stage: nil, detail: "retry \(retry)/3 in \(delay) s after: convert broke")))
            #expect(actions.contains(.retry(at: now.advanced(by: .seconds(delay)), after: .seconds(delay))))
            #expect(actions.ending == .retrying)
            #expect(journal.error == "convert broke")
            // The timer fires; a restarted process would rebuild the same lifecycle from the journal.
            now = now.advanced(by: .seconds(delay))
            lifecycle = journal.lifecycle(Self.queue)
            let due = lifecycle.handle(.retryDue, now: now)
            #expect(due == [.journal(.claimed, stage: nil, detail: "retry"), .enqueue(alone: false)])
            journal.apply(due)
        }
        let last = FakePipeline(failing.steps.map { ($0.name, $0.step) }, alreadyDone: 1).run(&lifecycle, journal: &journal, now: now)
        #expect(last.journaled == [.stageStarted, .stageFailed, .failed])
        #expect(Array(last.suffix(3)) == [.releaseReservation, .archive(.errors(message: "convert broke", stage: "convert", code: nil)),
                                          .end(.failed(stage: "convert", message: "convert broke", code: .toolFailed))])
        #expect(lifecycle.retries == 3)
    }

    @Test(arguments: [StageError.Code.badInput, .unsupportedGuest, .sourceChanged, nil])
    func aFailureThatCannotPassIsNotRetried(code: StageError.Code?) {
        var (lifecycle, journal) = Self.claimed()
        let actions = FakePipeline([("probe", .fails(code))]).run(&lifecycle, journal: &journal)
        #expect(actions.journaled == [.stageStarted, .stageFailed, .failed])
        #expect(!actions.contains { if case .retry = $0 { true } else { false } })
        #expect(actions.contains(.archive(.errors(message: "probe broke", stage: "probe", code: nil))))
    }

    @Test func withRetriesOffEveryFailureIsFinal() {
        var (lifecycle, journal) = Self.claimed(Self.noRetry)
        let actions = FakePipeline([("convert", .fails(.toolFailed))]).run(&lifecycle, journal: &journal)
        #expect(actions.journaled == [.stageStarted, .stageFailed, .failed])
        #expect(actions.ending == .failed(stage: "convert", message: "convert broke", code: .toolFailed))
    }

    @Test func aHugeBackoffIsCappedInsteadOfOverflowing() {
        let policy = Policy(retry: .init(enabled: true, maxRetries: 1000, retryDelaySeconds: 1e300, backoffMultiplier: 1e300), fromQueue: true)
        #expect(policy.delaySeconds(afterRetries: 0) == Policy.longestDelaySeconds)
        #expect(policy.delaySeconds(afterRetries: 999) == Policy.longestDelaySeconds)
        #expect(Self.queue.delaySeconds(afterRetries: 2) == 1200)
    }

    @Test func aRetryDueDuringAStopLeavesTheJobRetrying() {
        var (lifecycle, journal) = Self.claimed()
        _ = FakePipeline([("convert", .fails(.ioFailed))]).run(&lifecycle, journal: &journal)
        _ = lifecycle.handle(.stopRequested, now: .zero)
        #expect(lifecycle.handle(.retryDue, now: .zero).isEmpty)
        #expect(lifecycle.state == .retrying)
    }

    // MARK: - Waiting for space

    @Test func aFullDiskWaitsForSpaceThenResumesTheSameStage() {
        var (lifecycle, journal) = Self.claimed()
        let need = SpaceNeed(bytes: 1 << 30, directory: "/work/job-1")
        let actions = FakePipeline([("probe", .succeeds), ("convert", .runsOutOfSpace(need))]).run(&lifecycle, journal: &journal)
        #expect(Array(actions.suffix(3)) == [.journal(.waitingForSpace, stage: "convert", detail: "convert: no space left"),
                                             .waitForSpace(need), .end(.waitingForSpace(stage: "convert", message: "convert: no space left"))])
        #expect(!actions.journaled.contains(.stageFailed), "no space is no failure")
        let back = lifecycle.handle(.spaceReturned, now: .zero)
        #expect(back == [.journal(.resumed, stage: nil, detail: "space is available again"), .enqueue(alone: false)])
        journal.apply(back)
        let rest = FakePipeline([("probe", .succeeds), ("convert", .succeeds)], alreadyDone: 1).run(&lifecycle, journal: &journal)
        #expect(rest.ending == .published(outputPath: "/out/vm"))
    }

    @Test func spaceReturningDuringAStopLeavesTheJobWaitingForTheNextStart() {
        var (lifecycle, journal) = Self.claimed()
        _ = FakePipeline([("convert", .runsOutOfSpace(nil))]).run(&lifecycle, journal: &journal)
        _ = lifecycle.handle(.stopRequested, now: .zero)
        #expect(lifecycle.handle(.spaceReturned, now: .zero).isEmpty)
        var next = journal.lifecycle(Self.queue)
        let restart = next.handle(.restarted(reason: "daemon restarted", crash: nil, claimant: "pid 2"), now: .zero)
        #expect(restart.journaled == [.interrupted, .resumed] && restart.last == .enqueue(alone: false))
    }

    // MARK: - Stopping

    @Test func aStopBeforeAnyStageStartsNone() {
        var (lifecycle, journal) = Self.claimed()
        _ = lifecycle.handle(.stopRequested, now: .zero)
        let actions = FakePipeline.allSucceed().run(&lifecycle, journal: &journal)
        #expect(actions == [.journal(.interrupted, stage: nil, detail: "stopped before probe"), .end(.interrupted)])
    }

    @Test(arguments: FakePipeline.standard.indices)
    func aStopDuringAStageInterruptsItAndTheJobResumesThere(index: Int) {
        var (lifecycle, journal) = Self.claimed()
        let name = FakePipeline.standard[index]
        let steps = FakePipeline.standard.enumerated().map { ($0.element, $0.offset == index ? FakePipeline.Step.stoppedDuring : .succeeds) }
        let actions = FakePipeline(steps).run(&lifecycle, journal: &journal)
        #expect(Array(actions.suffix(2)) == [.journal(.interrupted, stage: name, detail: "stopped during \(name)"), .end(.interrupted)])
        #expect(!actions.journaled.contains(.failed) && !actions.journaled.contains(.stageFailed))
        var next = journal.lifecycle(Self.queue)
        let restart = next.handle(.restarted(reason: "daemon restarted", crash: nil, claimant: "pid 2"), now: .zero)
        #expect(restart == [.journal(.resumed, stage: nil, detail: "resuming after: daemon restarted"), .enqueue(alone: false)])
        journal.apply(restart)
        let resumed = FakePipeline(FakePipeline.standard.map { ($0, .succeeds) }, alreadyDone: index).run(&next, journal: &journal)
        #expect(resumed.contains(.runStage(name)) && resumed.ending == .published(outputPath: "/out/vm"))
    }

    @Test(arguments: FakePipeline.standard.indices)
    func aStageThatFinishesDuringAStopIsKeptAndNoFurtherStageStarts(index: Int) {
        var (lifecycle, journal) = Self.claimed()
        let names = FakePipeline.standard
        let steps = names.enumerated().map { ($0.element, $0.offset == index ? FakePipeline.Step.stopArrivesButFinishes : .succeeds) }
        let actions = FakePipeline(steps).run(&lifecycle, journal: &journal)
        #expect(actions.contains(.journal(.stageCompleted, stage: names[index], detail: "")))
        if index + 1 < names.count {
            #expect(Array(actions.suffix(2)) == [.journal(.interrupted, stage: nil, detail: "stopped before \(names[index + 1])"),
                                                 .end(.interrupted)])
        } else {
            // The last stage's work is done: publishing it is quicker than resuming it later.
            #expect(actions.ending == .published(outputPath: "/out/vm"))
        }
    }
}
