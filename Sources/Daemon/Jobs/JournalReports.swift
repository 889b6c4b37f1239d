import Foundation
import Journal

/// Renders what `status` and `history` print, as text for people or JSON for tools.
public enum JournalReports {
    /// What `status --json` prints.
    public struct StatusDocument: Codable, Sendable {
        public var daemon: DaemonRun?
        /// Whether that daemon still holds the journal (its pid is alive and it did not record a stop).
        public var daemonRunning: Bool
        public var counts: [String: Int]
        /// Jobs whose running stage made no progress for `stalled_after_seconds` (each has `stalledSince`).
        public var stalled: Int
        public var jobs: [JobRecord]
        /// Per disk copy progress of the jobs that have it, by job id.
        public var copies: [String: [DiskCopyProgress]]?
    }

    public static func status(_ jobs: [JobRecord], daemon: DaemonRun?, json: Bool,
                              copies: [Int64: [DiskCopyProgress]] = [:]) throws -> String {
        let running = daemon.map { $0.stoppedAt == nil && kill($0.pid, 0) == 0 } ?? false
        var counts: [String: Int] = [:]
        for job in jobs { counts[job.state.rawValue, default: 0] += 1 }
        let stalled = jobs.filter { $0.stalledSince != nil }.count
        if json {
            let byJob = Dictionary(uniqueKeysWithValues: copies.map { (String($0.key), $0.value) })
            return try encode(StatusDocument(daemon: daemon, daemonRunning: running, counts: counts, stalled: stalled, jobs: jobs,
                                             copies: byJob.isEmpty ? nil : byJob))
        }
        var header: [String] = []
        if let daemon {
            header.append(running
                ? "daemon: pid \(daemon.pid), running since \(daemon.startedAt), config \(daemon.config.isEmpty ? "(defaults)" : daemon.config.joined(separator: ", "))"
                : "daemon: not running (last run pid \(daemon.pid), \(daemon.startedAt) – \(daemon.stoppedAt ?? "killed"))")
            header.append("queue: \(daemon.watchDir) → \(daemon.outputDir)")
        }
        header.append("jobs: " + (counts.isEmpty ? "none" : counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
            + (stalled > 0 ? " (\(stalled) stalled)" : ""))
        guard !jobs.isEmpty else { return header.joined(separator: "\n") }
        var lines = header + [pad("JOB", 6) + pad("STATE", 18) + pad("STAGE", 10) + pad("PROGRESS", 9) + "SOURCE → OUTPUT"]
        for job in jobs {
            let progress = job.progress.map { String(format: "%3.0f%%", $0 * 100) } ?? "-"
            var line = pad("\(job.id)", 6) + pad(job.state.rawValue, 18) + pad(job.stage ?? "-", 10) + pad(progress, 9)
            // Source names, paths and errors quoting them are chosen by whoever dropped the file.
            line += UntrustedText.escaped(job.sourcePath)
            if let output = job.outputPath { line += " → " + UntrustedText.escaped(output) }
            for copy in copies[job.id] ?? [] { line += "\n      " + UntrustedText.escaped(copy.line) }
            if let error = job.error, job.state == .failed || job.state == .stageFailed { line += "\n      error: " + UntrustedText.escaped(error) }
            if let since = job.stalledSince { line += "\n      STALLED: stage \(job.stage ?? "?") without progress (reported \(since))" }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }

    public static func history(_ job: JobRecord, _ rows: [TransitionRecord], artifacts: [ArtifactRecord], json: Bool) throws -> String {
        struct Document: Encodable {
            let job: JobRecord
            let transitions: [TransitionRecord]
            let artifacts: [ArtifactRecord]
        }
        if json { return try encode(Document(job: job, transitions: rows, artifacts: artifacts)) }
        var lines = ["job \(job.id): \(UntrustedText.escaped(job.sourcePath)) (\(job.sourceKind)) — \(job.state.rawValue)"]
        for row in rows {
            let from = row.from?.rawValue ?? "∅"
            var line = "\(row.at)  \(from) → \(row.to.rawValue)"
            if let stage = row.stage { line += " [\(stage) #\(row.attempt)]" }
            if let detail = row.detail { line += "  \(UntrustedText.escaped(detail))" }
            lines.append(line)
        }
        if !artifacts.isEmpty {
            lines.append("artifacts:")
            for artifact in artifacts {
                lines.append("  \(artifact.stage)/\(artifact.name)  \(artifact.size) bytes  \(artifact.sha256 ?? "(no sha256)")  \(UntrustedText.escaped(artifact.path))")
            }
        }
        return lines.joined(separator: "\n")
    }

    static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    private static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }
}
