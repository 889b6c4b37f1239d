import Foundation
import Journal
import SystemSupport

/// Follows the journal's transitions in commit order and pairs each `stage-completed` with the
/// `stage-started` of the same job and stage: the durations of finished stages. A pure value:
/// the caller feeds it the rows committed since the last call.
struct StageDurations: Sendable {
    /// The id of the last transition read.
    private(set) var lastTransition: Int64 = 0
    /// Stages started and not yet ended, by job and stage: when they started.
    private var open: [OpenStage: String] = [:]

    private struct OpenStage: Hashable, Sendable {
        let job: Int64
        let stage: String
    }

    /// Reads `rows` (ids after `lastTransition`, in order) and returns the durations of the
    /// stages they complete, in seconds. A stage that failed, was interrupted or skipped ends
    /// without a duration: the histogram is of work that finished.
    mutating func read(_ rows: [TransitionRecord]) -> [(stage: String, seconds: Double)] {
        var finished: [(stage: String, seconds: Double)] = []
        for row in rows {
            lastTransition = max(lastTransition, row.id)
            guard let stage = row.stage else { continue }
            let key = OpenStage(job: row.jobID, stage: stage)
            switch row.to {
            case .stageStarted:
                open[key] = row.at
            case .stageCompleted:
                if let started = open.removeValue(forKey: key), let seconds = Self.seconds(from: started, to: row.at) {
                    finished.append((stage, seconds))
                }
            case .stageFailed, .stageSkipped, .interrupted, .failed, .waitingForSpace:
                open.removeValue(forKey: key)
            default:
                continue
            }
        }
        return finished
    }

    /// The journal's timestamps are ISO 8601 UTC with milliseconds; nil for anything else.
    static func seconds(from start: String, to end: String) -> Double? {
        guard let a = Timestamp.parse(start), let b = Timestamp.parse(end), b >= a else { return nil }
        return b.timeIntervalSince(a)
    }
}
