import Foundation
import Journal
import Stages

/// Carrying out the lifecycle's `archive`: the source and the files that belong to it move
/// to `.processed/<date>/`, or to `.errors/` with a `<name>.error.json` report.
extension DaemonQueue {
    func archiveSource(of jobID: Int64, _ archive: Lifecycle.Archive) throws {
        guard let job = try journal.job(jobID) else { throw JournalError.unknownJob(jobID) }
        let members = archiveMembers(of: job)
        defer { for member in members { taken.remove(member.name) } }
        switch archive {
        case .processed:
            try archiveConverted(job, members: members)
        case .errors(let message, let stage, let code):
            let history = try journal.history(job: job.id).map {
                "\($0.at) \($0.from?.rawValue ?? "∅") → \($0.to.rawValue) \($0.stage ?? "") \($0.detail ?? "")"
            }
            let report = ErrorReport.make(sourcePath: job.sourcePath, error: message, stage: stage, jobID: String(job.id),
                                          attempt: job.attempt, history: history, version: Hyper2KVMVersion.current, code: code)
            let archived = try SourceArchiver(watchDirectory: configuration.watchDir).archive(members, to: .errors)
            if let path = archived.first?.path {
                let reportPath = try ErrorReportWriter(watchDirectory: configuration.watchDir).write(report, forArchivedSource: path)
                logger.error("❌ Failed to process \(job.sourcePath): \(message) — see \(reportPath)")
            }
        }
    }

    private func archiveConverted(_ job: JobRecord, members: [SourceArchiver.Member]) throws {
        guard job.state == .published else { return }
        CrashPoints.hit("before-archive")
        let detail: String
        if configuration.archiveProcessed {
            let archived = try SourceArchiver(watchDirectory: configuration.watchDir).archive(members, to: .processed)
            detail = archived.map(\.path).joined(separator: ", ")
        } else {
            detail = "archive_processed: false; source left in place"
        }
        var lifecycle = try lifecycle(of: job.id)
        try perform(lifecycle.handle(.sourceArchived(detail: detail), now: .now), jobID: job.id)
        CrashPoints.hit("after-archive")
    }

    /// The job's source with the files that belong to it (extents, an OVF's disks), so
    /// they move together; the source carries the identity the journal recorded.
    func archiveMembers(of job: JobRecord) -> [SourceArchiver.Member] {
        let name = Self.queueName(of: job)
        let others = currentGrouping().job(containing: name).map { $0.members.filter { $0 != name } } ?? []
        return [.init(name: name, identity: FileIdentity(device: job.identity.device, inode: job.identity.inode))]
            + others.map { .init(name: $0) }
    }

    static func queueName(of job: JobRecord) -> String {
        URL(fileURLWithPath: job.sourcePath).lastPathComponent
    }
}
