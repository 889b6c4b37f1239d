import Foundation
import Journal
import Stages
import SystemSupport

/// What the journal says about each stage of one job: completed (with its artifacts),
/// skipped, or neither. Built from the job's history, so a restart sees exactly what
/// was committed before the crash.
struct StageLedger {
    enum Status { case completed, skipped }

    private var statuses: [String: Status] = [:]
    private var artifactsByStage: [String: [NewArtifact]] = [:]
    private var attemptCounts: [String: Int] = [:]
    private(set) var timings: [StageTiming] = []
    /// Set when a damaged output forces a rerun; journaled with the next start.
    var pendingDetail: String?

    init(history: [TransitionRecord], artifacts: [ArtifactRecord]) {
        var startedAt: [String: String] = [:]
        for row in history {
            guard let stage = row.stage else { continue }
            switch row.to {
            case .stageStarted:
                statuses[stage] = nil
                startedAt[stage] = row.at
                attemptCounts[stage] = row.attempt
            case .stageCompleted:
                statuses[stage] = .completed
                timings.removeAll { $0.name == stage }
                timings.append(StageTiming(name: stage, status: "completed", startedAt: startedAt[stage], finishedAt: row.at,
                                           seconds: StageDuration.seconds(from: startedAt[stage], to: row.at)))
            case .stageSkipped:
                statuses[stage] = .skipped
                timings.removeAll { $0.name == stage }
                timings.append(StageTiming(name: stage, status: "skipped", reason: row.detail, finishedAt: row.at))
            default:
                continue
            }
        }
        for artifact in artifacts where statuses[artifact.stage] == .completed {
            artifactsByStage[artifact.stage, default: []].append(
                NewArtifact(name: artifact.name, path: artifact.path, size: artifact.size, sha256: artifact.sha256))
        }
    }

    func status(of stage: String) -> Status? { statuses[stage] }
    func artifacts(of stage: String) -> [NewArtifact] { artifactsByStage[stage] ?? [] }
    func attempts(of stage: String) -> Int { attemptCounts[stage] ?? 0 }

    var recordedFiles: [String: URL] {
        var files: [String: URL] = [:]
        for artifact in artifactsByStage.values.joined() { files[artifact.name] = URL(fileURLWithPath: artifact.path) }
        return files
    }

    var recordedSHA256: [String: String] {
        var hashes: [String: String] = [:]
        for artifact in artifactsByStage.values.joined() { hashes[artifact.name] = artifact.sha256 }
        return hashes
    }

    mutating func forget(stagesFrom names: [String]) {
        for name in names {
            statuses[name] = nil
            artifactsByStage[name] = nil
            timings.removeAll { $0.name == name }
        }
    }

    mutating func noteSkipped(_ stage: String, reason: String) {
        statuses[stage] = .skipped
        timings.append(StageTiming(name: stage, status: "skipped", reason: reason, finishedAt: Timestamp.now()))
    }

    mutating func noteCompleted(_ stage: String, artifacts: [NewArtifact], startedAt: String, seconds: Double) {
        statuses[stage] = .completed
        artifactsByStage[stage] = artifacts
        timings.append(StageTiming(name: stage, status: "completed", startedAt: startedAt,
                                   finishedAt: Timestamp.now(), seconds: seconds))
    }
}

/// How long a stage took, from two of the journal's timestamps.
enum StageDuration {
    static func seconds(from start: String?, to end: String) -> Double? {
        guard let start, let a = Timestamp.parse(start), let b = Timestamp.parse(end) else { return nil }
        return b.timeIntervalSince(a)
    }
}

/// Checks recorded outputs before they are trusted: size always, SHA-256 with `checksum`.
struct ArtifactVerifier {
    /// Small outputs (JSON, XML) are always hashed: it costs nothing.
    static let alwaysHashedBytes: Int64 = 16 << 20
    let checksum: Bool

    func problem(with artifacts: [NewArtifact]) -> String? {
        for artifact in artifacts {
            let url = URL(fileURLWithPath: artifact.path)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: artifact.path, isDirectory: &isDirectory) else {
                return "\(artifact.path) is missing"
            }
            if isDirectory.boolValue { continue }
            guard let size = fileSize(url), size == artifact.size else {
                return "\(artifact.path) has size \(fileSize(url).map(String.init) ?? "?"), journal says \(artifact.size)"
            }
            guard let expected = artifact.sha256, checksum || artifact.size <= Self.alwaysHashedBytes else { continue }
            guard let actual = try? FileDigest.sha256(of: url), actual == expected else {
                return "\(artifact.path) does not match its recorded SHA-256"
            }
        }
        return nil
    }
}

/// Detects a source replaced or modified under a running job.
enum SourceIdentityCheck {
    static func current(of url: URL) -> SourceIdentity? {
        var info = stat()
        guard stat(url.path, &info) == 0 else { return nil }
        return SourceIdentity(
            device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
            mtimeNanoseconds: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec),
            ctimeNanoseconds: Int64(info.st_ctim.tv_sec) * 1_000_000_000 + Int64(info.st_ctim.tv_nsec))
    }

    /// nil when unchanged; otherwise what changed.
    static func change(of url: URL, recorded: SourceIdentity) -> String? {
        guard let now = current(of: url) else { return "it is gone" }
        if now.device != recorded.device || now.inode != recorded.inode { return "it was replaced by another file" }
        if now.size != recorded.size { return "its size changed from \(recorded.size) to \(now.size)" }
        if now.mtimeNanoseconds != recorded.mtimeNanoseconds || now.ctimeNanoseconds != recorded.ctimeNanoseconds {
            return "it was modified"
        }
        return nil
    }
}
