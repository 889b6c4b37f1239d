import Foundation
import Journal

/// Decides whether a job interrupted by a crash of the daemon is resumed once more or failed
/// as `poison`: a file that makes the daemon crash would otherwise be resumed at every start
/// and kill it again, until systemd's start limit leaves the service down.
///
/// Pure: the decision reads only the job's journal history, so it can move into a state
/// machine unchanged.
public enum PoisonRule {
    /// Crash interruptions in a row (no stage completing between them) that make a job poison.
    public static let crashesBeforePoison = 2

    public enum Decision: Sendable, Equatable {
        case resume
        /// The `interrupted` details of the crashes, oldest first.
        case poison(crashes: [String])
    }

    /// Counts, from the newest transition back, the `interrupted` rows that note a crash. A
    /// completed stage (the job made progress), a plain interruption (kill -9, a power cut,
    /// a stop) or an earlier failure (the file was dropped again) ends the count.
    public static func decide(history: [TransitionRecord]) -> Decision {
        var crashes: [String] = []
        for transition in history.reversed() {
            switch transition.to {
            case .stageCompleted, .failed:
                return decision(crashes)
            case .interrupted:
                guard let detail = transition.detail, CrashNote.isCrash(detail) else { return decision(crashes) }
                crashes.insert(detail, at: 0)
            default:
                continue
            }
        }
        return decision(crashes)
    }

    private static func decision(_ crashes: [String]) -> Decision {
        crashes.count >= crashesBeforePoison ? .poison(crashes: crashes) : .resume
    }
}

/// The detail of an `interrupted` transition caused by a crash of the daemon, and how it is recognised.
public enum CrashNote {
    public static let prefix = "crash: "

    /// "crash: the daemon died of SIGILL (signal 4) at … during stage convert (daemon run 3)".
    public static func detail(_ record: CrashRecord, stage: String?) -> String {
        prefix + "the daemon died of \(record.signalName) (signal \(record.signal)) at \(JournalTimestamp.format(record.time))"
            + (stage.map { " during stage \($0)" } ?? "") + " (daemon run \(record.run))"
    }

    public static func isCrash(_ detail: String) -> Bool {
        detail.hasPrefix(prefix)
    }
}
