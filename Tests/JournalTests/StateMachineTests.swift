import Foundation
import TestSupport
import Testing
@testable import Journal

@Suite("Job state machine")
struct StateMachineTests {
    @Test func onlyDiscoveredStartsAJob() {
        for state in JobState.allCases {
            #expect(TransitionRules.isLegal(from: nil, to: state) == (state == .discovered))
        }
    }

    @Test func everyStateIsReachableAndTerminalStatesAreTheEnd() {
        for state in JobState.allCases where state != .discovered {
            #expect(StatePaths.path(to: state) != nil, "\(state) cannot be reached")
        }
        #expect(Set(JobState.allCases.filter(\.isTerminal)) == [.archived, .duplicate])
    }

    /// Every (from, to) pair of states, through the journal: legal moves are recorded,
    /// illegal ones throw `.illegalTransition` and leave the job and its history untouched.
    @Test func everyPairIsCheckedAgainstTheTable() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        var checked = 0
        for (index, from) in JobState.allCases.enumerated() {
            // One job per source state; an illegal move leaves it where it was, so it
            // serves every illegal target, and a fresh one is made after each legal move.
            var job = try StatePaths.makeJob(in: from, journal: journal, seed: UInt64(index))
            for to in JobState.allCases {
                let before = try journal.history(job: job.id)
                let stage = StatePaths.stage(for: to)
                if TransitionRules.isLegal(from: from, to: to) {
                    let record = try journal.transition(job: job.id, to: to, stage: stage)
                    #expect(record.from == from && record.to == to)
                    #expect(try journal.job(job.id)?.state == to)
                    #expect(try journal.history(job: job.id).count == before.count + 1)
                    job = try StatePaths.makeJob(in: from, journal: journal, seed: UInt64(index))
                } else {
                    #expect(throws: JournalError.illegalTransition(job: job.id, from: from, to: to, stage: stage)) {
                        try journal.transition(job: job.id, to: to, stage: stage)
                    }
                    #expect(try journal.history(job: job.id) == before, "\(from) -> \(to) wrote a row")
                    #expect(try journal.job(job.id)?.state == from)
                }
                checked += 1
            }
        }
        #expect(checked == JobState.allCases.count * JobState.allCases.count)
    }

    @Test func stageCompletionMustNameTheStartedStage() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        let job = try StatePaths.makeJob(in: .claimed, journal: journal)
        try journal.transition(job: job.id, to: .stageStarted, stage: "convert")
        let before = try journal.history(job: job.id)
        #expect(throws: JournalError.stageMismatch(job: job.id, to: .stageCompleted, started: "convert", given: "probe")) {
            try journal.transition(job: job.id, to: .stageCompleted, stage: "probe")
        }
        #expect(throws: JournalError.stageMismatch(job: job.id, to: .stageFailed, started: "convert", given: nil)) {
            try journal.transition(job: job.id, to: .stageFailed, stage: nil)
        }
        #expect(throws: JournalError.stageMismatch(job: job.id, to: .stageCompleted, started: "convert", given: "probe")) {
            try journal.completeStage(job: job.id, stage: "probe", artifacts: [Fixture.artifact("x")], detail: nil)
        }
        #expect(try journal.artifacts(job: job.id).isEmpty)
        #expect(try journal.history(job: job.id) == before)
    }

    @Test func stageStartNeedsAStage() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        let job = try StatePaths.makeJob(in: .claimed, journal: journal)
        #expect(throws: JournalError.stageMismatch(job: job.id, to: .stageStarted, started: nil, given: nil)) {
            try journal.transition(job: job.id, to: .stageStarted, stage: nil)
        }
    }

    @Test func attemptCountsEarlierStartsOfTheSameStage() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        let job = try StatePaths.makeJob(in: .claimed, journal: journal)
        #expect(try journal.transition(job: job.id, to: .stageStarted, stage: "probe").attempt == 1)
        #expect(try journal.completeStage(job: job.id, stage: "probe", artifacts: [], detail: nil).attempt == 1)
        #expect(try journal.transition(job: job.id, to: .stageStarted, stage: "convert").attempt == 1)
        #expect(try journal.transition(job: job.id, to: .stageFailed, stage: "convert").attempt == 1)
        try journal.transition(job: job.id, to: .retrying)
        try journal.transition(job: job.id, to: .claimed)
        #expect(try journal.transition(job: job.id, to: .stageStarted, stage: "convert").attempt == 2)
        let interrupted = try journal.transition(job: job.id, to: .interrupted, detail: "SIGTERM")
        #expect(interrupted.stage == "convert" && interrupted.attempt == 2)
        try journal.transition(job: job.id, to: .resumed)
        #expect(try journal.transition(job: job.id, to: .stageStarted, stage: "convert").attempt == 3)
        let record = try #require(try journal.job(job.id))
        #expect(record.stage == "convert" && record.attempt == 3 && record.state == .stageStarted)
    }

    @Test func unknownJobIsAnError() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        #expect(throws: JournalError.unknownJob(42)) { try journal.transition(job: 42, to: .stable) }
        #expect(throws: JournalError.unknownJob(42)) { try journal.setProgress(job: 42, fraction: 0.5) }
        #expect(try journal.job(42) == nil)
    }
}
