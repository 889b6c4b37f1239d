import Foundation
import Journal
import Stages

extension JobRunner {
    /// Index of the first stage that must run: every stage before it completed (and its
    /// outputs are intact) or was skipped. A damaged output reruns its stage and all after it.
    func firstStageToRun(ledger: inout StageLedger, jobID: Int64) throws -> Int {
        for (index, stage) in stages.enumerated() {
            let name = stage.name.rawValue
            switch ledger.status(of: name) {
            case .skipped:
                continue
            case .completed:
                if let problem = ArtifactVerifier(checksum: options.checksum).problem(with: ledger.artifacts(of: name)) {
                    logger.warning("\(name) output damaged, rerunning: \(problem)", metadata: ["job": "\(jobID)"])
                    ledger.forget(stagesFrom: stages[index...].map(\.name.rawValue))
                    ledger.pendingDetail = "rerun: \(problem)"
                    return index
                }
                for artifact in ledger.artifacts(of: name) {
                    try journal.markVerified(job: jobID, stage: name, name: artifact.name, at: Date())
                }
            case .none:
                return index
            }
        }
        return stages.count
    }

    /// Makes every new output durable (fsync, rename, fsync dir) and measures it.
    func record(_ outputs: StageOutputs, in workDirectory: URL, ledger: StageLedger) throws -> [NewArtifact] {
        var artifacts: [NewArtifact] = []
        for (name, partial) in outputs.files.sorted(by: { $0.key < $1.key }) {
            let final = workDirectory.appendingPathComponent(name)
            try DurableFile.fsync(partial)
            try DurableFile.renameReplacing(from: partial, to: final)
            artifacts.append(try measure(name: name, url: final, knownSHA256: outputs.sha256[name]))
        }
        if !outputs.files.isEmpty { try DurableFile.fsyncDirectory(workDirectory) }
        for (name, url) in outputs.published.sorted(by: { $0.key < $1.key }) {
            // A published file is a link to an output already hashed by an earlier stage.
            if let known = ledger.recordedSHA256[name], let size = fileSize(url) {
                artifacts.append(NewArtifact(name: name, path: url.path, size: size, sha256: known))
            } else {
                artifacts.append(try measure(name: name, url: url))
            }
        }
        return artifacts
    }

    func measure(name: String, url: URL, knownSHA256: String? = nil) throws -> NewArtifact {
        guard let size = fileSize(url) else {
            throw StageError(.ioFailed, file: url.path, "output '\(name)' is missing after the stage")
        }
        var isDirectory: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory)
        let hash: String? = isDirectory.boolValue || !(options.checksum || size <= ArtifactVerifier.alwaysHashedBytes)
            ? nil : try knownSHA256 ?? FileDigest.sha256(of: url)
        return NewArtifact(name: name, path: url.path, size: size, sha256: hash)
    }

    func removeLeftovers(in workDirectory: URL) throws {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: workDirectory.path)) ?? []
        for name in names where name.hasSuffix(".partial") {
            try FileManager.default.removeItem(at: workDirectory.appendingPathComponent(name))
        }
    }
}

