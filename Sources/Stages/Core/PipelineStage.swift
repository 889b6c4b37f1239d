import Foundation

/// The pipeline's stages, in the order they run.
public enum StageName: String, Codable, Sendable, CaseIterable {
    case probe, extract, fix, v2v, convert, emit, checksum, publish, register
}

/// One step of a job. A stage reads its job's recorded inputs and writes new files only
/// under `context.workDirectory`, through `context.newOutput(named:)`; the runner makes
/// them durable, renames them to their final names and records them in the journal.
/// A stage may run more than once for one job (after a crash), so it must be re-entrant.
public protocol PipelineStage: Sendable {
    var name: StageName { get }
    /// nil when the stage applies to this job; otherwise why it is skipped (journaled).
    func skipReason(in context: StageContext) -> String?
    func run(in context: StageContext) async throws -> StageOutputs
}

/// Everything a stage may look at.
public struct StageContext: Sendable {
    public let jobID: Int64
    /// The file that was dropped (or named on the command line). Never written.
    public let source: URL
    public let kind: InputKind
    /// `<workdir>/<job-id>/`, owned by this job alone.
    public let workDirectory: URL
    public let options: ConversionOptions
    /// Final paths of the outputs earlier stages recorded, by output name.
    public let recorded: [String: URL]
    /// SHA-256 of recorded outputs, by output name, where the journal has one.
    public let recordedSHA256: [String: String]
    /// What happened to earlier stages of this job (for metadata.json).
    public let stageHistory: [StageTiming]
    /// Where the job publishes (`output_dir`).
    public let outputRoot: URL
    /// Reports progress of long operations (0…1); the runner records it for `status`.
    public let progress: @Sendable (Double) -> Void
    /// Checkpoints inside this stage, kept in the journal (see ``StageCheckpoints``).
    public let checkpoints: any StageCheckpoints

    public init(jobID: Int64, source: URL, kind: InputKind, workDirectory: URL, options: ConversionOptions,
                recorded: [String: URL], recordedSHA256: [String: String] = [:], stageHistory: [StageTiming] = [],
                outputRoot: URL, progress: @escaping @Sendable (Double) -> Void = { _ in },
                checkpoints: any StageCheckpoints = NoCheckpoints()) {
        self.jobID = jobID
        self.source = source
        self.kind = kind
        self.workDirectory = workDirectory
        self.options = options
        self.recorded = recorded
        self.recordedSHA256 = recordedSHA256
        self.stageHistory = stageHistory
        self.outputRoot = outputRoot
        self.progress = progress
        self.checkpoints = checkpoints
    }

    /// Where a stage writes output `name` before the runner publishes it under its final name.
    public func newOutput(named name: String) -> URL {
        workDirectory.appendingPathComponent(name + ".partial")
    }

    /// The final path output `name` will have once recorded.
    public func finalPath(of name: String) -> URL {
        workDirectory.appendingPathComponent(name)
    }

    public func recordedOutput(_ name: String) throws -> URL {
        guard let url = recorded[name] else {
            throw StageError(.ioFailed, file: finalPath(of: name).path, "output '\(name)' of an earlier stage is not recorded")
        }
        return url
    }
}

/// The files a stage produced.
public struct StageOutputs: Sendable {
    /// New files by output name, at their `.partial` paths; the runner makes them durable.
    public var files: [String: URL]
    /// Files already durable outside the work directory (publish), recorded as they are.
    public var published: [String: URL]
    /// A short human summary for the journal's detail column.
    public var detail: String?
    /// SHA-256 of some of `files`, computed by the stage over the finished file while other
    /// work was still running (the runner then does not read the file a second time). The
    /// stage must not change a file after hashing it.
    public var sha256: [String: String]

    public init(files: [String: URL] = [:], published: [String: URL] = [:], detail: String? = nil,
                sha256: [String: String] = [:]) {
        self.files = files
        self.published = published
        self.detail = detail
        self.sha256 = sha256
    }
}

/// One stage's outcome as journaled, for reports.
public struct StageTiming: Codable, Sendable, Equatable {
    public var name: String
    public var status: String
    public var reason: String?
    public var startedAt: String?
    public var finishedAt: String?
    public var seconds: Double?

    public init(name: String, status: String, reason: String? = nil, startedAt: String? = nil,
                finishedAt: String? = nil, seconds: Double? = nil) {
        self.name = name
        self.status = status
        self.reason = reason
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.seconds = seconds
    }

    enum CodingKeys: String, CodingKey {
        case name, status, reason, seconds
        case startedAt = "started_at"
        case finishedAt = "finished_at"
    }
}
