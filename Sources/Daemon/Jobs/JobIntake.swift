import Foundation
import Journal
import Stages

/// Turns a source file into a journaled job: records its identity (device, inode, size,
/// mtime, ctime) so a later change to it is detected, and its kind by extension (the
/// probe stage then checks the content agrees).
public enum JobIntake {
    public static func kind(of url: URL) throws -> InputKind {
        guard let kind = QueueEntryFilter.inputKind(of: url.lastPathComponent) else {
            let known = QueueEntryFilter.kindsByExtension.keys.sorted().map { "." + $0 }.joined(separator: " ")
            throw StageError(.badInput, file: url.path, "unsupported file type (expected one of \(known))")
        }
        return kind
    }

    public static func identity(of url: URL) throws -> SourceIdentity {
        guard let identity = SourceIdentityCheck.current(of: url) else {
            throw StageError(.ioFailed, file: url.path, "cannot read: \(String(cString: strerror(errno)))")
        }
        return identity
    }

    /// Creates the job and takes it through discovered → stable → claimed.
    public static func claimNewJob(source: URL, journal: JobJournal, vmName: String?, detail: String,
                                   sourceSHA256: String? = nil) throws -> JobRecord {
        let kind = try kind(of: source)
        let job = try journal.createJob(
            NewJob(sourcePath: source.path, sourceKind: kind.rawValue, identity: try identity(of: source),
                   sourceSHA256: sourceSHA256, vmName: vmName),
            detail: detail)
        CrashPoints.hit("after-discovered")
        try journal.transition(job: job.id, to: .stable, stage: nil, detail: "complete on arrival")
        CrashPoints.hit("after-stable")
        try journal.transition(job: job.id, to: .claimed, stage: nil, detail: "pid \(getpid())")
        CrashPoints.hit("after-claim")
        return try journal.job(job.id) ?? job
    }

    /// Takes a job that a crash left `discovered` or `stable` (the steps above are separate
    /// commits) on to `claimed`, so the next run continues it instead of starting a second
    /// job for the same file. Other states are left alone.
    public static func completeClaim(_ job: JobRecord, journal: JobJournal, reason: String) throws {
        switch job.state {
        case .discovered:
            try journal.transition(job: job.id, to: .stable, stage: nil, detail: "complete on arrival (\(reason))")
            try journal.transition(job: job.id, to: .claimed, stage: nil, detail: "pid \(getpid()) (\(reason))")
        case .stable:
            try journal.transition(job: job.id, to: .claimed, stage: nil, detail: "pid \(getpid()) (\(reason))")
        default:
            return
        }
    }

    /// Journals a file whose content an earlier job already converted: discovered → duplicate.
    public static func recordDuplicate(source: URL, of original: JobRecord, sha256: String, journal: JobJournal) throws -> JobRecord {
        let job = try journal.createJob(
            NewJob(sourcePath: source.path, sourceKind: try kind(of: source).rawValue, identity: try identity(of: source),
                   sourceSHA256: sha256, vmName: nil),
            detail: "found in the queue")
        try journal.transition(job: job.id, to: .duplicate, stage: nil,
                               detail: "same content (SHA-256 \(sha256)) as job \(original.id): \(original.outputPath ?? original.sourcePath)")
        return try journal.job(job.id) ?? job
    }
}
