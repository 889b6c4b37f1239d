import Journal
import Stages
import Testing
@testable import Daemon

/// A clock's instant that moves only when a test says so.
struct TestInstant: InstantProtocol {
    var offset: Duration

    static let zero = TestInstant(offset: .zero)
    func advanced(by duration: Duration) -> TestInstant { TestInstant(offset: offset + duration) }
    func duration(to other: TestInstant) -> Duration { other.offset - offset }
    static func < (lhs: TestInstant, rhs: TestInstant) -> Bool { lhs.offset < rhs.offset }
}

typealias TestLifecycle = JobLifecycle<TestInstant>

/// One directed edge of the transition table.
struct Edge: Hashable, CustomStringConvertible {
    var from: JobState?
    var to: JobState
    var description: String { "\(from?.rawValue ?? "∅") → \(to.rawValue)" }
}

/// The journal as far as the lifecycle is concerned, in memory: applies `.journal` actions,
/// refusing any move `TransitionRules` forbids (as the real journal does), and keeps the
/// history a restart replays.
struct MemoryJournal {
    private(set) var rows: [TransitionRecord] = []
    private(set) var state: JobState?
    private(set) var error: String?
    private(set) var edges: Set<Edge> = []

    init() {}

    /// A journal whose history is these moves (each checked).
    init(_ moves: [(JobState, String?)]) {
        for (to, stage) in moves { apply([.journal(to, stage: stage, detail: "")]) }
    }

    mutating func apply(_ actions: [TestLifecycle.Action], sourceLocation: SourceLocation = #_sourceLocation) {
        for action in actions {
            switch action {
            case .journal(let to, let stage, let detail):
                #expect(TransitionRules.isLegal(from: state, to: to), "illegal \(Edge(from: state, to: to))",
                        sourceLocation: sourceLocation)
                edges.insert(Edge(from: state, to: to))
                rows.append(TransitionRecord(id: Int64(rows.count + 1), jobID: 1, from: state, to: to, stage: stage,
                                             attempt: 1, at: "2027-01-15T08:00:00.000Z", detail: detail))
                state = to
            case .recordError(let message):
                error = message
            default:
                continue
            }
        }
    }

    /// The lifecycle a restart of the process would rebuild from this journal.
    func lifecycle(_ policy: TestLifecycle.Policy) -> TestLifecycle {
        TestLifecycle(policy: policy, history: rows, error: error)
    }
}

/// Stands in for the stages: each named stage does what the script says when run.
struct FakePipeline {
    enum Step: Equatable {
        case succeeds
        case skipped(String)
        case fails(StageError.Code?)
        case runsOutOfSpace(SpaceNeed?)
        /// A stop arrives while the stage runs and the stage is interrupted by it.
        case stoppedDuring
        /// A stop arrives while the stage runs, but the stage still finishes.
        case stopArrivesButFinishes
    }

    var steps: [(name: String, step: Step)]
    /// Stages completed in earlier runs (a resumed job starts after them).
    var alreadyDone = 0

    static let standard = ["probe", "convert", "fix", "publish"]

    init(_ steps: [(String, Step)], alreadyDone: Int = 0) {
        self.steps = steps.map { (name: $0.0, step: $0.1) }
        self.alreadyDone = alreadyDone
    }

    static func allSucceed(_ names: [String] = standard) -> FakePipeline {
        FakePipeline(names.map { ($0, .succeeds) })
    }

    /// Runs the job as `JobRunner` does, returning every action the lifecycle gave.
    func run(_ lifecycle: inout TestLifecycle, journal: inout MemoryJournal, now: TestInstant = .zero) -> [TestLifecycle.Action] {
        var all: [TestLifecycle.Action] = []
        func handle(_ event: TestLifecycle.Event) -> [TestLifecycle.Action] {
            let actions = lifecycle.handle(event, now: now)
            journal.apply(actions)
            all += actions
            return actions
        }
        for (name, step) in steps.dropFirst(alreadyDone) {
            let skip: String? = if case .skipped(let reason) = step { reason } else { nil }
            let next = handle(.nextStage(name, skipReason: skip, detail: "attempt 1"))
            if next.contains(where: \.isEnd) { return all }
            guard next.contains(.runStage(name)) else { continue }
            let event: TestLifecycle.Event
            switch step {
            case .succeeds, .skipped:
                event = .stageFinished(name, detail: "", .init())
            case .fails(let code):
                event = .stageFailed(name, code: code, message: "\(name) broke", need: nil)
            case .runsOutOfSpace(let need):
                event = .stageFailed(name, code: .noSpace, message: "\(name): no space left", need: need)
            case .stoppedDuring:
                _ = handle(.stopRequested)
                event = .stageInterrupted(name)
            case .stopArrivesButFinishes:
                _ = handle(.stopRequested)
                event = .stageFinished(name, detail: "", .init())
            }
            if handle(event).contains(where: \.isEnd) { return all }
        }
        _ = handle(.pipelineDone(publishedDirectory: "/out/vm"))
        return all
    }
}

extension JobLifecycle.Action {
    var isEnd: Bool {
        if case .end = self { true } else { false }
    }

    var journaledState: JobState? {
        if case .journal(let state, _, _) = self { state } else { nil }
    }
}

extension Array where Element == TestLifecycle.Action {
    var journaled: [JobState] { compactMap(\.journaledState) }
    var ending: TestLifecycle.Ending? {
        for case .end(let ending) in self { return ending }
        return nil
    }
}
