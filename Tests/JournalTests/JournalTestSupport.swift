import Foundation
import TestSupport
@testable import Journal

/// A test's state directory is a `Scratch`; these are the journal's files in it.
extension Scratch {
    var databasePath: String { path(JobJournal.databaseFileName) }
    var lockPath: String { path(JobJournal.lockFileName) }
}

enum Fixture {
    static func identity(_ seed: UInt64 = 1) -> SourceIdentity {
        SourceIdentity(device: 2049, inode: 1000 + seed, size: 4096 * Int64(seed),
                       mtimeNanoseconds: 1_700_000_000_000_000_000, ctimeNanoseconds: 1_700_000_000_000_000_001)
    }

    static func newJob(_ seed: UInt64 = 1) -> NewJob {
        NewJob(sourcePath: "/queue/vm\(seed).vmdk", sourceKind: "vmdk", identity: identity(seed))
    }

    static let sha256A = String(repeating: "a", count: 64)
    static let sha256B = String(repeating: "b", count: 64)

    static func artifact(_ name: String, sha256: String? = sha256A) -> NewArtifact {
        NewArtifact(name: name, path: "/work/1/\(name)", size: 1234, sha256: sha256)
    }
}

/// Walks the transition table to find how to bring a job from `discovered` to any state.
enum StatePaths {
    /// Shortest legal sequence of states after `discovered` ending in `target`.
    static func path(to target: JobState) -> [JobState]? {
        var previous: [JobState: JobState] = [:]
        var queue: [JobState] = [.discovered]
        var seen: Set<JobState> = [.discovered]
        while !queue.isEmpty {
            let state = queue.removeFirst()
            if state == target {
                var steps: [JobState] = []
                var cursor = state
                while let before = previous[cursor] {
                    steps.insert(cursor, at: 0)
                    cursor = before
                }
                return steps
            }
            for next in TransitionRules.legalTargets(from: state).sorted(by: { $0.rawValue < $1.rawValue })
            where !seen.contains(next) {
                seen.insert(next)
                previous[next] = state
                queue.append(next)
            }
        }
        return nil
    }

    /// The stage argument a transition into `state` needs when every stage run is "convert".
    static func stage(for state: JobState) -> String? {
        state.requiresStage ? "convert" : nil
    }

    /// Creates a job and drives it to `target` through legal transitions.
    static func makeJob(in target: JobState, journal: JobJournal, seed: UInt64 = 1) throws -> JobRecord {
        let job = try journal.createJob(Fixture.newJob(seed))
        guard let steps = path(to: target) else {
            throw JournalError.invalidValue(field: "target", message: "\(target) unreachable")
        }
        for step in steps {
            try journal.transition(job: job.id, to: step, stage: stage(for: step))
        }
        guard let record = try journal.job(job.id) else { throw JournalError.unknownJob(job.id) }
        return record
    }
}
