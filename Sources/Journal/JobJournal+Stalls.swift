import Foundation
import GRDB
import SystemSupport

extension JobJournal {
    /// Marks every job whose stage has run without progress since before `threshold` as
    /// stalled, and enqueues its `stalled` notification in the same transaction. A job is
    /// marked once per stall: progress or the next transition clears the mark. Returns the
    /// jobs marked now.
    public func markStalledJobs(noProgressSince threshold: Date, now: Date = Date()) throws -> [JobRecord] {
        let marked: [JobRecord] = try writeTransaction { db in
            let stamp = Timestamp.format(now)
            let candidates = try Row.fetchAll(db, sql: """
                SELECT id, stage, attempt, coalesce(progressed_at, updated_at) AS since FROM jobs
                WHERE state = ? AND stalled_at IS NULL AND coalesce(progressed_at, updated_at) < ?
                """, arguments: [JobState.stageStarted.rawValue, Timestamp.format(threshold)])
            let policy = outboxHook.policy
            var marked: [JobRecord] = []
            for row in candidates {
                let id: Int64 = row["id"]
                let stage: String? = row["stage"]
                let attempt: Int = row["attempt"]
                let since: String = row["since"]
                try db.execute(sql: "UPDATE jobs SET stalled_at = ? WHERE id = ?", arguments: [stamp, id])
                if policy.onStalled {
                    // The stage, its attempt and the last progress name this one stall.
                    try enqueue(db, event: "stalled", job: id, stage: stage,
                                detail: "no progress since \(since)", at: stamp,
                                keyBase: "hyper2kvm-job\(id)-stalled-\(stage ?? "none")-a\(attempt)-\(since.filter(\.isNumber))", policy: policy)
                }
                if let job = try fetchJob(db, id: id) { marked.append(job) }
            }
            return marked
        }
        outboxHook.signalIfEnqueued()
        return marked
    }

    /// When the earliest running stage that is not stalled yet will have gone `stalledAfter`
    /// seconds without progress; nil when no stage runs.
    public func nextStallDue(stalledAfter: TimeInterval) throws -> Date? {
        try readSnapshot { db in
            try String.fetchOne(db, sql: """
                SELECT min(coalesce(progressed_at, updated_at)) FROM jobs WHERE state = ? AND stalled_at IS NULL
                """, arguments: [JobState.stageStarted.rawValue])
                .flatMap(Timestamp.parse).map { $0.addingTimeInterval(stalledAfter) }
        }
    }

    /// How many jobs are stalled now (for metrics).
    public func stalledJobCount() throws -> Int {
        try readSnapshot { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM jobs WHERE stalled_at IS NOT NULL") ?? 0 }
    }
}
