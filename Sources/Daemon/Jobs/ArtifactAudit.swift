import Foundation
import Journal
import Stages

/// `hyper2kvm verify`: re-hashes every recorded artifact and reports each one that is
/// missing, has another size, or no longer matches its SHA-256. Read-only: the journal is
/// opened for reading, so it runs beside a daemon.
public struct ArtifactAudit: Sendable {
    public struct Finding: Codable, Sendable, Equatable {
        public var job: Int64
        public var stage: String
        public var name: String
        public var path: String
        public var problem: String
    }

    public struct Report: Codable, Sendable {
        public var checked: Int
        public var skipped: Int
        public var bytesHashed: Int64
        public var findings: [Finding]
        public var ok: Bool { findings.isEmpty }
    }

    let journal: JobJournal

    public init(journal: JobJournal) {
        self.journal = journal
    }

    /// Artifacts of `jobID` (or of every job); work-directory artifacts of jobs already
    /// published were removed on purpose and are skipped, only published files are audited.
    public func run(jobID: Int64? = nil) throws -> Report {
        let jobs = try jobID.map { id in [try journal.job(id)].compactMap { $0 } } ?? journal.allJobs()
        if let jobID, jobs.isEmpty { throw JournalError.unknownJob(jobID) }
        var report = Report(checked: 0, skipped: 0, bytesHashed: 0, findings: [])
        for job in jobs {
            let finished = job.state == .published || job.state == .archived
            for artifact in try journal.artifacts(job: job.id) {
                if finished && artifact.stage != StageName.publish.rawValue {
                    report.skipped += 1
                    continue
                }
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: artifact.path, isDirectory: &isDirectory) else {
                    report.findings.append(finding(job, artifact, "missing"))
                    continue
                }
                if isDirectory.boolValue { continue }
                report.checked += 1
                let size = (try? FileManager.default.attributesOfItem(atPath: artifact.path)[.size] as? NSNumber)?.int64Value
                guard size == artifact.size else {
                    report.findings.append(finding(job, artifact, "size \(size.map(String.init) ?? "?"), journal says \(artifact.size)"))
                    continue
                }
                guard let expected = artifact.sha256 else { continue }
                let actual = try FileDigest.sha256(of: URL(fileURLWithPath: artifact.path))
                report.bytesHashed += artifact.size
                if actual != expected {
                    report.findings.append(finding(job, artifact, "SHA-256 \(actual), journal says \(expected)"))
                }
            }
        }
        return report
    }

    private func finding(_ job: JobRecord, _ artifact: ArtifactRecord, _ problem: String) -> Finding {
        Finding(job: job.id, stage: artifact.stage, name: artifact.name, path: artifact.path, problem: problem)
    }

    public static func render(_ report: Report, json: Bool) throws -> String {
        if json { return try JournalReports.encode(report) }
        var lines = report.findings.map { "MISMATCH job \($0.job) \($0.stage)/\($0.name) \($0.path): \($0.problem)" }
        lines.append("\(report.checked) artifact(s) checked, \(report.findings.count) mismatch(es), "
                     + "\(report.bytesHashed) bytes hashed, \(report.skipped) scratch artifact(s) of finished jobs skipped")
        return lines.joined(separator: "\n")
    }
}

/// `hyper2kvm journal export`: every job, transition and artifact as JSON lines, for archiving.
public enum JournalExport {
    public static func lines(from journal: JobJournal) throws -> [String] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        func line<T: Encodable>(_ kind: String, _ value: T) throws -> String {
            String(decoding: try encoder.encode(ExportLine(type: kind, record: value)), as: UTF8.self)
        }
        var output: [String] = []
        for job in try journal.allJobs() {
            output.append(try line("job", job))
            for row in try journal.history(job: job.id) { output.append(try line("transition", row)) }
            for artifact in try journal.artifacts(job: job.id) { output.append(try line("artifact", artifact)) }
        }
        return output
    }
}

private struct ExportLine<Record: Encodable>: Encodable {
    let type: String
    let record: Record
}
