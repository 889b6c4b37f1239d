import Foundation
import Journal

/// Renders what `status` and `history` print, as text for people or JSON for tools.
public enum JournalReports {
    public static func status(_ jobs: [JobRecord], json: Bool) throws -> String {
        if json { return try encode(jobs) }
        guard !jobs.isEmpty else { return "no jobs" }
        var lines = [pad("JOB", 6) + pad("STATE", 18) + pad("STAGE", 10) + pad("PROGRESS", 9) + "SOURCE → OUTPUT"]
        for job in jobs {
            let progress = job.progress.map { String(format: "%3.0f%%", $0 * 100) } ?? "-"
            var line = pad("\(job.id)", 6) + pad(job.state.rawValue, 18) + pad(job.stage ?? "-", 10) + pad(progress, 9)
            line += job.sourcePath
            if let output = job.outputPath { line += " → " + output }
            if let error = job.error, job.state == .failed || job.state == .stageFailed { line += "\n      error: " + error }
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
        var lines = ["job \(job.id): \(job.sourcePath) (\(job.sourceKind)) — \(job.state.rawValue)"]
        for row in rows {
            let from = row.from?.rawValue ?? "∅"
            var line = "\(row.at)  \(from) → \(row.to.rawValue)"
            if let stage = row.stage { line += " [\(stage) #\(row.attempt)]" }
            if let detail = row.detail { line += "  \(detail)" }
            lines.append(line)
        }
        if !artifacts.isEmpty {
            lines.append("artifacts:")
            for artifact in artifacts {
                lines.append("  \(artifact.stage)/\(artifact.name)  \(artifact.size) bytes  \(artifact.sha256 ?? "(no sha256)")  \(artifact.path)")
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
