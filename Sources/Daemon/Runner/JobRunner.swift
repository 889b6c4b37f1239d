import Foundation
import Journal
import Logging
import Stages
import Synchronization

/// Drives one job's stages in order through the journal, as the design's protocol says:
/// write-ahead `stage-started`, outputs private until fsynced and renamed, then
/// `stage-completed` with every output's size and SHA-256 in one transaction.
/// Completed, intact stages are never redone; an interrupted stage is rerun from scratch.
public struct JobRunner: Sendable {
    public enum Outcome: Sendable, Equatable {
        case published(outputPath: String)
        case failed(stage: String?, message: String, code: StageError.Code?)
        /// A filesystem filled up, or a stage's estimate did not fit: partial outputs are
        /// gone, the job is journaled `waiting-for-space` and resumes when space returns;
        /// `need` (when the stage estimated it) says how much must be free.
        case waitingForSpace(stage: String, message: String, need: SpaceNeed?)
    }

    let journal: JobJournal
    let stages: [any PipelineStage]
    let options: ConversionOptions
    let workRoot: URL
    let outputRoot: URL
    let logger: Logger
    let stopFlag: StopFlag

    public init(journal: JobJournal, stages: [any PipelineStage], options: ConversionOptions,
                workRoot: URL, outputRoot: URL, logger: Logger, stopFlag: StopFlag = StopFlag()) {
        self.journal = journal
        self.stages = stages
        self.options = options
        self.workRoot = workRoot
        self.outputRoot = outputRoot
        self.logger = logger
        self.stopFlag = stopFlag
    }

    /// The runner of the standard pipeline with the configuration's directories and options
    /// (one place for the one-shot command and the daemon).
    public static func standard(configuration: Configuration, journal: JobJournal, logger: Logger,
                                stopFlag: StopFlag = StopFlag()) -> JobRunner {
        JobRunner(
            journal: journal,
            stages: StandardPipeline.stages(toolVersion: Hyper2KVMVersion.current,
                                            parallelDiskCopies: configuration.parallelProcessing ? configuration.parallelDiskCopies : 1),
            options: configuration.conversion,
            workRoot: URL(fileURLWithPath: configuration.workDir),
            outputRoot: URL(fileURLWithPath: configuration.outputDir),
            logger: logger,
            stopFlag: stopFlag)
    }

    public func workDirectory(of jobID: Int64) -> URL {
        workRoot.appendingPathComponent("job-\(jobID)")
    }

    /// Runs every stage not yet completed. The job must be `claimed` or `resumed`.
    public func run(jobID: Int64) async throws -> Outcome {
        guard let job = try journal.job(jobID) else { throw JournalError.unknownJob(jobID) }
        let workDirectory = workDirectory(of: jobID)
        try FileManager.default.createDirectory(at: workDirectory, withIntermediateDirectories: true)
        let source = URL(fileURLWithPath: job.sourcePath)
        guard let kind = InputKind(rawValue: job.sourceKind) else {
            throw StageError(.badInput, file: job.sourcePath, "unknown input kind '\(job.sourceKind)' in the journal")
        }

        var ledger = try StageLedger(history: journal.history(job: jobID), artifacts: journal.artifacts(job: jobID))
        let firstToRun = try firstStageToRun(ledger: &ledger, jobID: jobID)

        for stage in stages.dropFirst(firstToRun) {
            let stageName = stage.name.rawValue
            if stopFlag.isSet {
                // Shutting down: no new stage starts; the next start resumes here.
                try journal.transition(job: jobID, to: .interrupted, stage: nil, detail: "stopped before \(stageName)")
                throw CancellationError()
            }
            if let change = SourceIdentityCheck.change(of: source, recorded: job.identity) {
                let message = "the source changed while the job ran (\(change)); outputs discarded"
                try journal.transition(job: jobID, to: .failed, stage: nil, detail: message)
                try? FileManager.default.removeItem(at: workDirectory)
                return .failed(stage: stageName, message: "\(job.sourcePath): \(message)", code: .sourceChanged)
            }
            let context = StageContext(
                jobID: jobID, source: source, kind: kind, workDirectory: workDirectory, options: options,
                recorded: ledger.recordedFiles, recordedSHA256: ledger.recordedSHA256,
                stageHistory: ledger.timings, outputRoot: outputRoot,
                progress: ProgressRecorder(journal: journal, jobID: jobID).record)
            if let reason = stage.skipReason(in: context) {
                logger.info("skipped \(stageName): \(reason)", metadata: ["job": "\(jobID)"])
                try journal.transition(job: jobID, to: .stageSkipped, stage: stageName, detail: reason)
                ledger.noteSkipped(stageName, reason: reason)
                continue
            }
            CrashPoints.hit("\(stageName).before-start")
            let started = try journal.transition(job: jobID, to: .stageStarted, stage: stageName,
                                                 detail: ledger.pendingDetail ?? "attempt \(ledger.attempts(of: stageName) + 1)")
            ledger.pendingDetail = nil
            CrashPoints.hit("\(stageName).after-start")
            try removeLeftovers(in: workDirectory)
            logger.info("\(stageName) started", metadata: ["job": "\(jobID)", "attempt": "\(started.attempt)"])
            let began = ContinuousClock.now
            do {
                let outputs = try await stage.run(in: context)
                let artifacts = try record(outputs, in: workDirectory, ledger: ledger)
                CrashPoints.hit("\(stageName).outputs-durable")
                try journal.completeStage(job: jobID, stage: stageName, artifacts: artifacts, detail: outputs.detail)
                CrashPoints.hit("\(stageName).after-commit")
                if let digest = artifacts.first(where: { $0.name == SourceDigestFile.name }),
                   let data = FileManager.default.contents(atPath: digest.path),
                   let sourceDigest = try? JSONDecoder().decode(SourceDigestFile.self, from: data) {
                    // Lets a later drop of the same content be recognised as a duplicate.
                    try journal.updateJob(job: jobID, vmName: nil, outputPath: nil, error: nil, sourceSHA256: sourceDigest.identityKey)
                }
                ledger.noteCompleted(stageName, artifacts: artifacts, startedAt: started.at,
                                     seconds: (ContinuousClock.now - began).seconds)
                logger.info("\(stageName) completed in \(String(format: "%.2f", (ContinuousClock.now - began).seconds)) s",
                            metadata: ["job": "\(jobID)"])
            } catch where Task.isCancelled {
                // A stopped child tool reports a failure; the cause is the shutdown.
                try? removeLeftovers(in: workDirectory)
                try journal.transition(job: jobID, to: .interrupted, stage: stageName, detail: "stopped during \(stageName)")
                throw CancellationError()
            } catch {
                let stageError = error as? StageError
                let message = String(describing: error)
                logger.error("\(stageName) failed: \(message)", metadata: ["job": "\(jobID)"])
                try? removeLeftovers(in: workDirectory)
                if stageError?.code == .noSpace {
                    try journal.transition(job: jobID, to: .waitingForSpace, stage: stageName, detail: message)
                    return .waitingForSpace(stage: stageName, message: message, need: stageError?.spaceNeed)
                }
                try journal.transition(job: jobID, to: .stageFailed, stage: stageName, detail: message)
                try journal.updateJob(job: jobID, vmName: nil, outputPath: nil, error: message, sourceSHA256: nil)
                return .failed(stage: stageName, message: message, code: stageError?.code)
            }
        }

        let published = ledger.recordedFiles[PublishStage.directoryArtifact]?.path ?? outputRoot.path
        try journal.updateJob(job: jobID, vmName: nil, outputPath: published, error: nil, sourceSHA256: nil)
        CrashPoints.hit("before-published")
        try journal.transition(job: jobID, to: .published, stage: nil, detail: published)
        CrashPoints.hit("after-published")
        try? FileManager.default.removeItem(at: workDirectory)
        return .published(outputPath: published)
    }

    /// Gives back the output directory a job reserved, once the job has failed for good,
    /// and removes its work directory.
    public func releaseReservation(jobID: Int64) {
        let target = (try? journal.artifacts(job: jobID))?.first { $0.name == PublicationTarget.fileName }
        if let target, let data = FileManager.default.contents(atPath: target.path),
           let reserved = try? JSONDecoder().decode(PublicationTarget.self, from: data) {
            do {
                try OutputPublisher(outputDirectory: outputRoot).release(URL(fileURLWithPath: reserved.directory), jobID: jobID)
            } catch {
                logger.warning("cannot release \(reserved.directory): \(error)", metadata: ["job": "\(jobID)"])
            }
        }
        try? FileManager.default.removeItem(at: workDirectory(of: jobID))
    }

    /// Index of the first stage that must run: every stage before it completed (and its
    /// outputs are intact) or was skipped. A damaged output reruns its stage and all after it.
    private func firstStageToRun(ledger: inout StageLedger, jobID: Int64) throws -> Int {
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
    private func record(_ outputs: StageOutputs, in workDirectory: URL, ledger: StageLedger) throws -> [NewArtifact] {
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

    private func measure(name: String, url: URL, knownSHA256: String? = nil) throws -> NewArtifact {
        guard let size = fileSize(url) else {
            throw StageError(.ioFailed, file: url.path, "output '\(name)' is missing after the stage")
        }
        var isDirectory: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory)
        let hash: String? = isDirectory.boolValue || !(options.checksum || size <= ArtifactVerifier.alwaysHashedBytes)
            ? nil : try knownSHA256 ?? FileDigest.sha256(of: url)
        return NewArtifact(name: name, path: url.path, size: size, sha256: hash)
    }

    private func removeLeftovers(in workDirectory: URL) throws {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: workDirectory.path)) ?? []
        for name in names where name.hasSuffix(".partial") {
            try FileManager.default.removeItem(at: workDirectory.appendingPathComponent(name))
        }
    }
}

func fileSize(_ url: URL) -> Int64? {
    guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.path) else { return nil }
    return (attributes[.size] as? NSNumber)?.int64Value
}

extension Duration {
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}

/// Set when the daemon is stopping: running jobs start no further stage.
public final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    public init() {}
    public var isSet: Bool { value.load(ordering: .relaxed) }
    public func set() { value.store(true, ordering: .relaxed) }
}

/// Records progress at most a few times a second: `status` needs a figure, not a stream.
final class ProgressRecorder: Sendable {
    private let journal: JobJournal
    private let jobID: Int64
    private let lastWrite = Mutex<ContinuousClock.Instant?>(nil)

    init(journal: JobJournal, jobID: Int64) {
        self.journal = journal
        self.jobID = jobID
    }

    var record: @Sendable (Double) -> Void {
        { [self] fraction in
            let now = ContinuousClock.now
            let due = lastWrite.withLock { last -> Bool in
                if let last, now - last < .milliseconds(500), fraction < 1 { return false }
                last = now
                return true
            }
            if due { try? journal.setProgress(job: jobID, fraction: min(max(fraction, 0), 1)) }
        }
    }
}
