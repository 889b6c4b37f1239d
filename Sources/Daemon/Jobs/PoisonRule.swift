import Foundation
import Journal
import SystemSupport

/// Decides whether a job interrupted by a crash of the daemon is resumed once more or failed
/// as `poison`: a file that makes the daemon crash would otherwise be resumed at every start
/// and kill it again, until systemd's start limit leaves the service down.
///
/// Pure: the decision reads only the job's journal history; `JobLifecycle` keeps the
/// streak as it follows the journal and asks `isPoison` at a start after a crash.
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
        decision(history.reduce([]) { streak($0, after: $1.to, detail: $1.detail) })
    }

    /// The crash streak after one more transition: a crash interruption adds its note; a
    /// completed stage, a plain interruption or a failure starts the count again.
    static func streak(_ crashes: [String], after state: JobState, detail: String?) -> [String] {
        switch state {
        case .stageCompleted, .failed:
            return []
        case .interrupted:
            guard let detail, CrashNote.isCrash(detail) else { return [] }
            return crashes + [detail]
        default:
            return crashes
        }
    }

    static func isPoison(_ crashes: [String]) -> Bool {
        crashes.count >= crashesBeforePoison
    }

    private static func decision(_ crashes: [String]) -> Decision {
        isPoison(crashes) ? .poison(crashes: crashes) : .resume
    }
}

/// The detail of an `interrupted` transition caused by a crash of the daemon, and how it is recognised.
public enum CrashNote {
    public static let prefix = "crash: "

    /// "crash: the daemon died of SIGILL (signal 4) at … during stage convert (daemon run 3)".
    public static func detail(_ record: CrashRecord, stage: String?) -> String {
        prefix + "the daemon died of \(record.signalName) (signal \(record.signal)) at \(Timestamp.format(record.time))"
            + (stage.map { " during stage \($0)" } ?? "") + " (daemon run \(record.run))"
    }

    public static func isCrash(_ detail: String) -> Bool {
        detail.hasPrefix(prefix)
    }
}
