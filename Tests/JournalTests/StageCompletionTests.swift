import Foundation
import TestSupport
import Testing
@testable import Journal

@Suite("Stage completion and artifacts")
struct StageCompletionTests {
    @Test func completionAndArtifactsCommitTogether() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        let job = try StatePaths.makeJob(in: .claimed, journal: journal)
        try journal.transition(job: job.id, to: .stageStarted, stage: "convert")
        let completion = try journal.completeStage(
            job: job.id, stage: "convert",
            artifacts: [Fixture.artifact("disk0.qcow2"), Fixture.artifact("disk1.qcow2", sha256: nil)],
            detail: "2 disks")
        #expect(completion.to == .stageCompleted && completion.stage == "convert" && completion.attempt == 1)
        let artifacts = try journal.artifacts(job: job.id)
        #expect(artifacts.map(\.name) == ["disk0.qcow2", "disk1.qcow2"])
        #expect(artifacts.allSatisfy { $0.recordedAt == completion.at && $0.attempt == 1 && $0.stage == "convert" })
        #expect(artifacts[0].sha256 == Fixture.sha256A && artifacts[1].sha256 == nil)
    }

    /// The second artifact violates UNIQUE(job, stage, name) after the transition row and
    /// the first artifact were inserted: the whole transaction must roll back.
    @Test func failureInTheMiddleLeavesNeitherTransitionNorArtifacts() async throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        let job = try StatePaths.makeJob(in: .claimed, journal: journal)
        try journal.transition(job: job.id, to: .stageStarted, stage: "convert")
        let history = try journal.history(job: job.id)
        #expect(throws: JournalError.duplicateArtifact(job: job.id, stage: "convert", name: "disk0.qcow2")) {
            try journal.completeStage(
                job: job.id, stage: "convert",
                artifacts: [Fixture.artifact("disk0.qcow2"), Fixture.artifact("other"), Fixture.artifact("disk0.qcow2")],
                detail: nil)
        }
        #expect(try journal.history(job: job.id) == history)
        #expect(try journal.artifacts(job: job.id).isEmpty)
        #expect(try journal.job(job.id)?.state == .stageStarted)
        // An independent connection sees nothing either.
        #expect(try await SQLiteShell.run(directory.databasePath, "SELECT count(*) FROM artifacts") == ["0"])
        #expect(try await SQLiteShell.run(directory.databasePath,
                                    "SELECT count(*) FROM transitions WHERE to_state = 'stage-completed'") == ["0"])
    }

    /// docs/crash-safety.md, row 5: a completed stage whose output no longer verifies is rerun;
    /// its new completion must replace the old rows instead of hitting UNIQUE.
    @Test func rerunOfACompletedStageReplacesItsArtifacts() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        let job = try StatePaths.makeJob(in: .claimed, journal: journal)
        try journal.transition(job: job.id, to: .stageStarted, stage: "convert")
        try journal.completeStage(job: job.id, stage: "convert",
                                  artifacts: [Fixture.artifact("disk0.qcow2"), Fixture.artifact("old-only")], detail: nil)
        try journal.markVerified(job: job.id, stage: "convert", name: "disk0.qcow2")
        try journal.transition(job: job.id, to: .interrupted)
        try journal.transition(job: job.id, to: .resumed, detail: "disk0.qcow2 checksum mismatch")
        #expect(try journal.transition(job: job.id, to: .stageStarted, stage: "convert").attempt == 2)
        try journal.completeStage(job: job.id, stage: "convert",
                                  artifacts: [Fixture.artifact("disk0.qcow2", sha256: Fixture.sha256B)], detail: nil)
        let artifacts = try journal.artifacts(job: job.id)
        #expect(artifacts.count == 1)
        #expect(artifacts.first?.sha256 == Fixture.sha256B)
        #expect(artifacts.first?.attempt == 2)
        #expect(artifacts.first?.verifiedAt == nil)
    }

    @Test func artifactsOfOtherStagesAreKept() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        let job = try StatePaths.makeJob(in: .claimed, journal: journal)
        try journal.transition(job: job.id, to: .stageStarted, stage: "extract")
        try journal.completeStage(job: job.id, stage: "extract", artifacts: [Fixture.artifact("vm.ovf")], detail: nil)
        try journal.transition(job: job.id, to: .stageStarted, stage: "convert")
        try journal.completeStage(job: job.id, stage: "convert", artifacts: [Fixture.artifact("disk0.qcow2")], detail: nil)
        #expect(try journal.artifacts(job: job.id).map(\.stage).sorted() == ["convert", "extract"])
    }

    @Test func invalidChecksumsAreRefusedBeforeWriting() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        let job = try StatePaths.makeJob(in: .claimed, journal: journal)
        try journal.transition(job: job.id, to: .stageStarted, stage: "convert")
        #expect {
            try journal.completeStage(job: job.id, stage: "convert",
                                      artifacts: [Fixture.artifact("d", sha256: "xyz")], detail: nil)
        } throws: { error in
            guard case .invalidValue? = error as? JournalError else { return false }
            return true
        }
        #expect(try journal.job(job.id)?.state == .stageStarted)
        // Upper case is accepted and stored in the canonical lower case.
        try journal.completeStage(job: job.id, stage: "convert",
                                  artifacts: [Fixture.artifact("d", sha256: String(repeating: "A", count: 64))],
                                  detail: nil)
        #expect(try journal.artifacts(job: job.id).first?.sha256 == Fixture.sha256A)
    }

    @Test func markVerifiedNeedsARecordedArtifact() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        let job = try journal.createJob(Fixture.newJob())
        #expect(throws: JournalError.unknownArtifact(job: job.id, stage: "convert", name: "x")) {
            try journal.markVerified(job: job.id, stage: "convert", name: "x")
        }
    }
}
