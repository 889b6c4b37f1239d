import Foundation
import Journal
import Stages

/// Turns a source file into a journaled job: records its identity (device, inode, size,
/// mtime, ctime) so a later change to it is detected, and its kind by extension (the
/// probe stage then checks the content agrees).
public enum JobIntake {
    public static func kind(of url: URL) throws -> InputKind {
        // A directory is a job only as a Hyper-V export folder (README, "Hyper-V exports").
        if HyperVExportReader.looksLikeExport(url) { return .hyperv }
        guard let kind = QueueEntryFilter.inputKind(of: url.lastPathComponent) else {
            let known = QueueEntryFilter.kindsByExtension.keys.sorted().map { "." + $0 }.joined(separator: " ")
            throw StageError(.badInput, file: url.path, "unsupported file type (expected one of \(known), or a Hyper-V export folder)")
        }
        return kind
    }

    public static func identity(of url: URL) throws -> SourceIdentity {
        guard let identity = SourceIdentityCheck.current(of: url) else {
            throw StageError(.ioFailed, file: url.path, "cannot read: \(String(cString: strerror(errno)))")
        }
        return identity
    }

    /// Creates the job and takes it through discovered → stable → claimed, as its lifecycle says.
    public static func claimNewJob(source: URL, journal: JobJournal, vmName: String?, detail: String,
                                   sourceSHA256: String? = nil, policy: DaemonJobLifecycle.Policy) throws -> JobRecord {
        let new = NewJob(sourcePath: source.path, sourceKind: try kind(of: source).rawValue, identity: try identity(of: source),
                         sourceSHA256: sourceSHA256, vmName: vmName)
        var lifecycle = DaemonJobLifecycle(policy: policy)
        return try create(new, actions: lifecycle.handle(.claim(detail: detail, claimant: "pid \(getpid())"), now: .now),
                          journal: journal, crashPoints: ["after-discovered", "after-stable", "after-claim"])
    }

    /// Journals a file whose content an earlier job already converted: discovered → duplicate.
    /// (The caller archives it with a note naming the original.)
    public static func recordDuplicate(source: URL, of original: JobRecord, sha256: String, journal: JobJournal,
                                       policy: DaemonJobLifecycle.Policy) throws -> JobRecord {
        let new = NewJob(sourcePath: source.path, sourceKind: try kind(of: source).rawValue, identity: try identity(of: source),
                         sourceSHA256: sha256, vmName: nil)
        let detail = "same content (SHA-256 \(sha256)) as job \(original.id): \(original.outputPath ?? original.sourcePath)"
        var lifecycle = DaemonJobLifecycle(policy: policy)
        return try create(new, actions: lifecycle.handle(.duplicate(detail: detail), now: .now), journal: journal, crashPoints: [])
    }

    /// Carries out a new job's journal actions: the first creates the row, the others move it.
    private static func create(_ new: NewJob, actions: [DaemonJobLifecycle.Action], journal: JobJournal,
                               crashPoints: [String]) throws -> JobRecord {
        var job: JobRecord?
        var points = crashPoints[...]
        for case .journal(let state, let stage, let detail) in actions {
            if let created = job {
                try journal.transition(job: created.id, to: state, stage: stage, detail: detail)
            } else {
                job = try journal.createJob(new, detail: detail)
            }
            if let point = points.popFirst() { CrashPoints.hit(point) }
        }
        guard let created = job else { throw StageError(.ioFailed, file: new.sourcePath, "the job could not be created") }
        return try journal.job(created.id) ?? created
    }
}
