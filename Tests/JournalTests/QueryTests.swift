import Foundation
import SystemSupport
import TestSupport
import Testing
@testable import Journal

@Suite("Journal queries and records")
struct QueryTests {
    @Test func historyIsInCommitOrder() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        let job = try journal.createJob(Fixture.newJob(), detail: "seen in queue")
        let other = try journal.createJob(Fixture.newJob(2))
        let plan: [(JobState, String?)] = [
            (.stable, nil), (.claimed, nil), (.stageStarted, "probe"), (.stageCompleted, "probe"),
            (.stageSkipped, "extract"), (.stageStarted, "convert"), (.stageCompleted, "convert"),
            (.published, nil), (.archived, nil),
        ]
        for (state, stage) in plan {
            try journal.transition(job: job.id, to: state, stage: stage, detail: "to \(state.rawValue)")
            // Interleave another job's rows so ordering by id is actually exercised.
            try journal.setProgress(job: other.id, fraction: 0.5)
            _ = try journal.createJob(Fixture.newJob(3))
        }
        let history = try journal.history(job: job.id)
        #expect(history.map(\.to) == [.discovered] + plan.map(\.0))
        #expect(history.first?.from == nil && history.first?.detail == "seen in queue")
        #expect(zip(history, history.dropFirst()).allSatisfy { $0.id < $1.id && $0.at <= $1.at && $0.to == $1.from })
        #expect(history.allSatisfy { $0.jobID == job.id })
        #expect(history.map(\.stage) == [nil, nil, nil, "probe", "probe", "extract", "convert", "convert", "convert", "convert"])
        #expect(history.allSatisfy { Timestamp.parse($0.at) != nil })
    }

    @Test func recordsEncodeAsJSONWithStateNames() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        let job = try StatePaths.makeJob(in: .claimed, journal: journal)
        try journal.transition(job: job.id, to: .stageStarted, stage: "convert")
        let encoder = JSONEncoder()
        let historyJSON = String(decoding: try encoder.encode(try journal.history(job: job.id)), as: UTF8.self)
        #expect(historyJSON.contains("\"stage-started\""))
        let record = try #require(try journal.job(job.id))
        let decoded = try JSONDecoder().decode(JobRecord.self, from: try encoder.encode(record))
        #expect(decoded == record)
    }

    @Test func jobsAreFoundByStateIdentityAndChecksum() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        var withHash = Fixture.newJob(1)
        withHash.sourceSHA256 = Fixture.sha256A
        withHash.identity.device = UInt64.max  // stored with the same bit pattern
        let first = try journal.createJob(withHash)
        let second = try journal.createJob(Fixture.newJob(2))
        try journal.transition(job: second.id, to: .stable)

        #expect(first.identity == withHash.identity)
        #expect(try journal.jobs(matchingIdentity: withHash.identity).map(\.id) == [first.id])
        var changed = withHash.identity
        changed.mtimeNanoseconds += 1
        #expect(try journal.jobs(matchingIdentity: changed).isEmpty)
        #expect(try journal.jobs(withSourceSHA256: Fixture.sha256A).map(\.id) == [first.id])
        #expect(try journal.jobs(in: [.discovered]).map(\.id) == [first.id])
        #expect(try journal.jobs(in: [.discovered, .stable]).map(\.id) == [first.id, second.id])
        #expect(try journal.jobs(in: []).isEmpty)
        #expect(try journal.allJobs().map(\.id) == [first.id, second.id])
    }

    @Test func updatesChangeOnlyTheGivenFields() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        var newJob = Fixture.newJob()
        newJob.vmName = "web01"
        let job = try journal.createJob(newJob)
        try journal.updateJob(job: job.id, vmName: nil, outputPath: "/out/web01", error: nil, sourceSHA256: Fixture.sha256B)
        try journal.setProgress(job: job.id, fraction: 0.25)
        let updated = try #require(try journal.job(job.id))
        #expect(updated.vmName == "web01" && updated.outputPath == "/out/web01")
        #expect(updated.sourceSHA256 == Fixture.sha256B && updated.progress == 0.25 && updated.error == nil)
        #expect(try journal.history(job: job.id).count == 1, "progress and updates are not transitions")
        #expect(throws: JournalError.invalidValue(field: "progress", message: "1.5 is not between 0 and 1")) {
            try journal.setProgress(job: job.id, fraction: 1.5)
        }
        #expect(throws: JournalError.unknownJob(99)) {
            try journal.updateJob(job: 99, error: "boom")
        }
    }

    @Test func timestampsAreUTCWithMilliseconds() {
        let date = Date(timeIntervalSince1970: 1_767_225_600.5)
        #expect(Timestamp.format(date) == "2026-01-01T00:00:00.500Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: -0.25)) == "1969-12-31T23:59:59.750Z")
        #expect(Timestamp.parse("2026-01-01T00:00:00.500Z") == date)
        #expect(Timestamp.parse("yesterday") == nil)
    }

    @Test func errorMessagesNameTheProblem() {
        #expect(JournalError.locked(path: "/s/journal.sqlite", holderPID: 4242).description.contains("pid 4242"))
        #expect(JournalError.illegalTransition(job: 7, from: .archived, to: .claimed, stage: nil).description
                == "job 7: illegal transition archived -> claimed")
        #expect(JournalError.illegalTransition(job: 7, from: nil, to: .claimed, stage: nil).description
                .contains("(new job) -> claimed"))
    }
}
