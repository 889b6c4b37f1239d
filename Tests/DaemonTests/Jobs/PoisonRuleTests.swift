import Foundation
import Testing
import TestSupport
import Journal
@testable import Daemon

@Suite("PoisonRule")
struct PoisonRuleTests {
    static let crash = CrashRecord(run: 3, signal: SIGILL, time: Date(timeIntervalSince1970: 1_800_000_000))

    func history(_ rows: [(JobState, String?)]) -> [TransitionRecord] {
        rows.enumerated().map { index, row in
            TransitionRecord(id: Int64(index + 1), jobID: 1, from: nil, to: row.0, stage: "convert", attempt: 1,
                             at: "2027-01-15T08:00:00.000Z", detail: row.1)
        }
    }

    var crashNote: String { CrashNote.detail(Self.crash, stage: "convert") }

    @Test func oneCrashResumes() {
        let rows = history([(.claimed, nil), (.stageStarted, nil), (.interrupted, crashNote)])
        #expect(PoisonRule.decide(history: rows) == .resume)
    }

    @Test func twoCrashesInARowArePoison() {
        let rows = history([(.claimed, nil), (.stageStarted, nil), (.interrupted, crashNote), (.resumed, nil),
                            (.stageStarted, nil), (.interrupted, crashNote)])
        #expect(PoisonRule.decide(history: rows) == .poison(crashes: [crashNote, crashNote]))
    }

    @Test func aStageCompletedBetweenTheCrashesResumes() {
        let rows = history([(.stageStarted, nil), (.interrupted, crashNote), (.resumed, nil), (.stageStarted, nil),
                            (.stageCompleted, nil), (.stageStarted, nil), (.interrupted, crashNote)])
        #expect(PoisonRule.decide(history: rows) == .resume)
    }

    @Test func killsAndPowerLossNeverPoison() {
        let rows = history([(.stageStarted, nil), (.interrupted, "daemon restarted"), (.resumed, nil), (.stageStarted, nil),
                            (.interrupted, "daemon restarted"), (.resumed, nil), (.stageStarted, nil), (.interrupted, "daemon restarted")])
        #expect(PoisonRule.decide(history: rows) == .resume)
    }

    @Test func aPlainInterruptionBetweenTheCrashesResumes() {
        let rows = history([(.stageStarted, nil), (.interrupted, crashNote), (.resumed, nil), (.stageStarted, nil),
                            (.interrupted, "daemon restarted"), (.resumed, nil), (.stageStarted, nil), (.interrupted, crashNote)])
        #expect(PoisonRule.decide(history: rows) == .resume)
    }

    @Test func aFileDroppedAgainAfterFailingStartsCountingAfresh() {
        let rows = history([(.stageStarted, nil), (.interrupted, crashNote), (.resumed, nil), (.stageStarted, nil),
                            (.interrupted, crashNote), (.failed, "poison"), (.retrying, nil), (.claimed, nil),
                            (.stageStarted, nil), (.interrupted, crashNote)])
        #expect(PoisonRule.decide(history: rows) == .resume)
    }

    @Test func crashRecordLineParses() {
        #expect(CrashRecord.parse("run=3 signal=4 time=1800000000\n") == Self.crash)
        #expect(CrashRecord.parse("") == nil)
        #expect(CrashRecord.parse("run=3 signal=4\n") == nil)
        #expect(CrashRecord.parse("run=x signal=4 time=1\n") == nil)
        #expect(Self.crash.signalName == "SIGILL")
        #expect(crashNote == "crash: the daemon died of SIGILL (signal 4) at 2027-01-15T08:00:00.000Z during stage convert (daemon run 3)")
    }

    @Test func aRecordOfAnotherRunIsIgnored() throws {
        let directory = try Scratch("crash")
        let file = CrashRecordFile(stateDirectory: directory.path)
        try "run=3 signal=4 time=1800000000\n".write(toFile: file.path, atomically: true, encoding: .utf8)
        #expect(file.read(previousRun: 3) == Self.crash)
        #expect(file.read(previousRun: 4) == nil)
        #expect(file.read(previousRun: nil) == nil)
    }
}
