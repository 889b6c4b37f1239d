import Foundation
import Journal
import Logging
import Stages

/// The facts particular stages leave for the job as a whole, read from their recorded
/// outputs as typed values, so the generic runner and the lifecycle never name a stage's
/// files: the source's digest (convert), the published directory (publish), the output
/// directory reserved for the job (reserve).
struct StageFactReader: Sendable {
    let outputRoot: URL
    let logger: Logger

    /// What a just-completed stage's artifacts say about the job.
    func facts(of artifacts: [NewArtifact]) -> DaemonJobLifecycle.StageFacts {
        guard let digest = artifacts.first(where: { $0.name == SourceDigestFile.name }),
              let data = FileManager.default.contents(atPath: digest.path),
              let sourceDigest = try? JSONDecoder().decode(SourceDigestFile.self, from: data)
        else { return .init() }
        // Lets a later drop of the same content be recognised as a duplicate.
        return .init(sourceDigest: try? sourceDigest.identityKey)
    }

    /// Where the publish stage put the VM; a preflight's report (`dry_run: true`), which
    /// publishes no VM; the output root when neither was recorded.
    func publishedDirectory(recorded: [String: URL]) -> String {
        (recorded[PublishStage.directoryArtifact] ?? recorded[PreflightReport.artifactName])?.path ?? outputRoot.path
    }

    /// The job's result when it is not a plain success: a preflight's verdict ("dry run: will
    /// not boot: <reasons>"), else `bootNotEnsured`.
    func result(recorded: [String: URL]) -> String? {
        if let file = recorded[PreflightReport.artifactName], let data = FileManager.default.contents(atPath: file.path),
           let preflight = try? JSONDecoder().decode(PreflightReport.self, from: data) {
            let reasons = preflight.verdict.reasons.isEmpty ? "" : ": " + preflight.verdict.reasons.joined(separator: "; ")
            let text = "dry run, nothing converted: \(preflight.verdict.outcome.rawValue)" + reasons
            return text.count > 400 ? String(text.prefix(399)) + "…" : text
        }
        return bootNotEnsured(recorded: recorded)
    }

    /// "converted, boot not ensured: <reasons>" when the fix stage's report has reasons to
    /// doubt the guest boots (read from the recorded report, so a resumed job says it too).
    func bootNotEnsured(recorded: [String: URL]) -> String? {
        guard let file = recorded[StageFiles.fixReport], let data = FileManager.default.contents(atPath: file.path),
              let report = try? JSONDecoder().decode(GuestFixReport.self, from: data) else { return nil }
        return report.bootResult
    }

    /// Gives back the output directory the job reserved, once it has failed for good.
    func releaseReservation(jobID: Int64, artifacts: [ArtifactRecord]) {
        guard let target = artifacts.first(where: { $0.name == PublicationTarget.fileName }),
              let data = FileManager.default.contents(atPath: target.path),
              let reserved = try? JSONDecoder().decode(PublicationTarget.self, from: data)
        else { return }
        do {
            try OutputPublisher(outputDirectory: outputRoot).release(URL(fileURLWithPath: reserved.directory), jobID: jobID)
        } catch {
            logger.warning("cannot release \(reserved.directory): \(error)", metadata: ["job": "\(jobID)"])
        }
    }
}
