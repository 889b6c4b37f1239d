import Foundation
import Journal
import Logging
import Stages

/// The daemon's state: files waiting to become stable, jobs waiting for a slot, jobs
/// running. Everything that must survive a crash is in the journal; this only schedules.
actor DaemonQueue {
    private let configuration: Configuration
    private let journal: JobJournal
    private let logger: Logger
    private let runner: JobRunner
    private let sampler: FileStabilitySampler<ContinuousClock>
    private var tracker: FileStabilityTracker<ContinuousClock.Instant>
    /// Jobs ready to run, first come first served.
    private var pending: [Int64] = []
    private var running: [Int64: Task<Void, Never>] = [:]
    /// Queue names that already belong to a job (or are waiting to), so no file is taken twice.
    private var taken: Set<String> = []
    private var stopping = false
    private var idleWaiter: CheckedContinuation<Void, Never>?
    private let stopFlag = StopFlag()
    private var waitingForSpace: Set<Int64> = []
    /// Jobs that were inside a stage when the daemon crashed: each runs alone, so a second
    /// crash is blamed on the job that caused it and not on a neighbour.
    private var crashSuspects: Set<Int64> = []

    init(configuration: Configuration, journal: JobJournal, logger: Logger) {
        self.configuration = configuration
        self.journal = journal
        self.logger = logger
        runner = JobRunner.standard(configuration: configuration, journal: journal, logger: logger, stopFlag: stopFlag)
        sampler = FileStabilitySampler(directory: configuration.watchDir, clock: ContinuousClock(), logger: logger)
        tracker = FileStabilityTracker(quietPeriod: .milliseconds(Int64(configuration.fileStableSeconds * 1000)))
    }

    // MARK: - Start

    /// Every job the journal shows mid-pipeline is resumed (interrupted → resumed) and queued
    /// first, oldest first; jobs published but not archived are archived. `crash`: the record
    /// of the previous run's death by a fatal signal; a job it hit twice in a row is failed
    /// as poison instead of resumed (`JobRecovery.recoverAtStart`).
    func recoverInterruptedJobs(crash: CrashRecord? = nil) throws {
        let states = JobRecovery.inFlight.union([.interrupted, .published, .retrying, .stageFailed, .discovered, .stable])
        for job in try journal.jobs(in: states).sorted(by: { $0.id < $1.id }) {
            taken.formUnion(archiveMembers(of: job).map(\.name))
            switch job.state {
            case .published:
                try finishPublished(job)
            case .stageFailed:
                try finishFailed(job, message: job.error ?? "failed before the daemon stopped", stage: job.stage)
            case .retrying:
                try journal.transition(job: job.id, to: .claimed, stage: nil, detail: "retry after restart")
                pending.append(job.id)
            case .discovered, .stable:
                // Killed while the job was being claimed: continue it rather than start a second one.
                try JobIntake.completeClaim(job, journal: journal, reason: "daemon restarted")
                pending.append(job.id)
            default:
                if case .poison(let crashes) = try JobRecovery.recoverAtStart(job, journal: journal, crash: crash),
                   let failed = try journal.job(job.id) {
                    try finishFailed(failed, message: JobRecovery.poisonMessage(crashes: crashes), stage: job.stage,
                                     code: JobRecovery.poisonCode)
                    continue
                }
                logger.info("resuming job \(job.id) (\(job.sourcePath)) after restart")
                if crash != nil && job.state == .stageStarted { crashSuspects.insert(job.id) }
                pending.append(job.id)
            }
        }
        schedule()
    }

    /// Looks at every file in the queue (at start and after an inotify overflow).
    func rescan(reason: String) {
        let names: [String]
        do {
            names = try QueueDirectoryListing.regularFileNames(in: configuration.watchDir)
        } catch {
            logger.error("cannot list \(configuration.watchDir): \(error)")
            return
        }
        let now = ContinuousClock.now
        for name in names where !taken.contains(name) {
            if case .candidate = QueueEntryFilter.classify(name) {
                tracker.noteArrival(name, .discovered, at: now)
            }
        }
        logger.debug("rescan (\(reason)): \(tracker.trackedNames.count) file(s) to check")
        wakeStabilityChecks()
    }

    // MARK: - Events

    func handle(_ event: WatchEvent) {
        guard !stopping else { return }
        switch event.kind {
        case .overflow:
            rescan(reason: "inotify queue overflow")
            return
        case .directoryGone:
            logger.critical("the queue directory \(configuration.watchDir) disappeared")
            return
        case .deleted, .movedOut:
            tracker.forget(event.name)
            return
        case .movedIn, .closedAfterWrite, .created, .modified:
            guard !event.isDirectory, !taken.contains(event.name) else { return }
            switch QueueEntryFilter.classify(event.name) {
            case .candidate:
                tracker.noteArrival(event.name, event.kind == .movedIn ? .movedIn : .written, at: .now)
                wakeStabilityChecks()
            case .extent, .ignored:
                return
            }
        }
    }

    /// Samples tracked files when they are due; sleeps when nothing is pending (no polling while idle).
    func runStabilityChecks() async {
        while !stopping && !Task.isCancelled {
            if let next = evaluate() {
                try? await Task.sleep(until: next, clock: .continuous)
            } else {
                await withCheckedContinuation { idleWaiter = $0 }
            }
        }
    }

    private func wakeStabilityChecks() {
        idleWaiter?.resume()
        idleWaiter = nil
    }

    /// Returns when the next check is due, or nil when no file is waiting.
    private func evaluate() -> ContinuousClock.Instant? {
        let names = tracker.trackedNames
        guard !names.isEmpty else { return nil }
        var next: ContinuousClock.Instant?
        var stable: [String] = []
        for (name, verdict) in sampler.check(names, with: &tracker) {
            switch verdict {
            case .stable:
                tracker.forget(name)
                stable.append(name)
            case .pending(let due):
                next = next.map { min($0, due) } ?? due
            case .gone:
                tracker.forget(name)
            }
        }
        if !stable.isEmpty { intakeStableFiles(stable) }
        return next
    }

    /// Groups the queue into jobs (an OVF with its disks, a descriptor with its extents)
    /// and takes each job whose files are all present and stable.
    private func intakeStableFiles(_ stable: [String]) {
        let grouping = currentGrouping()
        let stillSettling = Set(tracker.trackedNames)
        for name in stable.sorted() {
            guard let job = grouping.job(containing: name) else {
                intake(name, members: [name])
                continue
            }
            guard job.missing.isEmpty else {
                logger.info("\(job.primary) waits for \(job.missing.joined(separator: ", "))")
                continue
            }
            // Whichever member settles last brings the whole job in.
            guard job.members.allSatisfy({ !stillSettling.contains($0) && !taken.contains($0) }) else { continue }
            intake(job.primary, members: job.members)
        }
    }

    private func currentGrouping() -> QueueJobGrouping {
        let names = (try? QueueDirectoryListing.regularFileNames(in: configuration.watchDir)) ?? []
        let directory = URL(fileURLWithPath: configuration.watchDir)
        return QueueEntryFilter.groupJobs(names: names) { name, kind in
            switch kind {
            case .ovf:
                return try OVFDescriptor.load(directory.appendingPathComponent(name)).referencedFiles
            case .manifest:
                // Disks a manifest names inside the queue belong to its job, not jobs of their own.
                // Only top-level names: `queue/../x` is no queue file to wait for (the reader refuses it).
                let queuePath = directory.standardizedFileURL.path + "/"
                return try ArtifactManifest.load(from: directory.appendingPathComponent(name)).disks
                    .map(\.localPath).filter { $0.hasPrefix(queuePath) }.map { String($0.dropFirst(queuePath.count)) }
                    .filter { !$0.contains("/") && $0 != ".." && $0 != "." }
            default:
                return []
            }
        }
    }

    // MARK: - Jobs

    private func intake(_ name: String, members: [String]) {
        guard !stopping, !taken.contains(name) else { return }
        let source = URL(fileURLWithPath: configuration.watchDir).appendingPathComponent(name)
        do {
            let identity = try JobIntake.identity(of: source)
            let earlier = try journal.jobs(matchingIdentity: identity).filter { $0.sourcePath == source.path }
            if let done = earlier.first(where: { $0.state == .published || $0.state == .archived }) {
                logger.info("\(name) was already converted by job \(done.id); archiving it")
                try finishPublished(done)
                return
            }
            taken.formUnion(members)
            let sameSize = configuration.enableDeduplication ? try journal.convertedJobs(withSourceSize: identity.size) : []
            guard !sameSize.isEmpty else {
                try claim(name, members: members, sha256: nil)
                return
            }
            // Only a file the size of an earlier conversion is hashed: most drops cost no extra read.
            Task {
                // The same digest the convert stage records (`SourceDigest.identityKey`).
                let digest = try? await SourceDigest.compute(source, label: "h2k-dup-sha256").identityKey
                self.finishIntake(name, members: members, sha256: digest, candidates: sameSize)
            }
        } catch {
            taken.subtract(members)
            logger.error("cannot queue \(name): \(error)")
            rejectUnqueued(name: name, message: String(describing: error))
        }
    }

    private func finishIntake(_ name: String, members: [String], sha256: String?, candidates: [JobRecord]) {
        let source = URL(fileURLWithPath: configuration.watchDir).appendingPathComponent(name)
        do {
            if let sha256, let original = candidates.first(where: { $0.sourceSHA256 == sha256 }) {
                let duplicate = try JobIntake.recordDuplicate(source: source, of: original, sha256: sha256, journal: journal)
                let archived = try SourceArchiver(watchDirectory: configuration.watchDir)
                    .archive(members.map { SourceArchiver.Member(name: $0) }, to: .processed)
                if let path = archived.first?.path {
                    let note = DuplicateNote(duplicate_of_job: original.id, original_source: original.sourcePath,
                                             output: original.outputPath, sha256: sha256, job: duplicate.id)
                    let notePath = DurableFiles.parent(of: path) + "/"
                        + DurableFiles.companionName(of: DurableFiles.lastComponent(of: path), suffix: ".duplicate.json")
                    try DurableFile.write(JSONEncoder().encode(note), to: URL(fileURLWithPath: notePath))
                }
                logger.notice("\(name) has the same content as job \(original.id); not converted again (job \(duplicate.id))")
                taken.subtract(members)
                return
            }
            try claim(name, members: members, sha256: sha256)
        } catch {
            taken.subtract(members)
            logger.error("cannot queue \(name): \(error)")
            rejectUnqueued(name: name, message: String(describing: error))
        }
    }

    private func claim(_ name: String, members: [String], sha256: String?) throws {
        guard !stopping else {
            taken.subtract(members)  // found again by the next start's scan
            return
        }
        let source = URL(fileURLWithPath: configuration.watchDir).appendingPathComponent(name)
        let detail = members.count > 1 ? "found in \(configuration.watchDir) with \(members.dropFirst().joined(separator: ", "))"
                                       : "found in \(configuration.watchDir)"
        let job = try JobIntake.claimNewJob(source: source, journal: journal, vmName: configuration.conversion.vmName,
                                            detail: detail, sourceSHA256: sha256)
        logger.info("📥 New file queued: \(name) (job \(job.id))")
        pending.append(job.id)
        schedule()
    }

    /// A file that could not even become a job (unknown type, unreadable) still goes to
    /// `.errors/` with a report, so the operator sees why and the queue stays clean.
    private func rejectUnqueued(name: String, message: String) {
        let source = configuration.watchDir + "/" + name
        let report = ErrorReport.make(sourcePath: source, error: message, stage: "intake", jobID: nil, attempt: nil,
                                      version: Hyper2KVMVersion.current)
        do {
            let archived = try SourceArchiver(watchDirectory: configuration.watchDir).archive([.init(name: name)], to: .errors)
            if let path = archived.first?.path {
                _ = try ErrorReportWriter(watchDirectory: configuration.watchDir).write(report, forArchivedSource: path)
            }
        } catch {
            logger.error("cannot move \(name) to .errors: \(error)")
        }
    }

    private func schedule() {
        while !stopping, running.count < configuration.maxConcurrent, let next = pending.first {
            if !running.isEmpty && (crashSuspects.contains(next) || running.keys.contains(where: crashSuspects.contains)) { break }
            let jobID = pending.removeFirst()
            logger.info("🔄 Processing: job \(jobID)")
            running[jobID] = Task { [runner, logger] in
                do {
                    let outcome = try await runner.run(jobID: jobID)
                    self.finish(jobID, outcome)
                } catch is CancellationError {
                    logger.notice("job \(jobID) interrupted; it resumes at the next start")
                    self.finishInterrupted(jobID)
                } catch {
                    logger.error("job \(jobID): \(error)")
                    self.finish(jobID, .failed(stage: nil, message: String(describing: error), code: nil))
                }
            }
        }
    }

    private func finishInterrupted(_ jobID: Int64) {
        running[jobID] = nil
    }

    private func finish(_ jobID: Int64, _ outcome: JobRunner.Outcome) {
        running[jobID] = nil
        crashSuspects.remove(jobID)
        defer { schedule() }
        do {
            guard let job = try journal.job(jobID) else { return }
            switch outcome {
            case .published(let path):
                logger.info("✅ Completed: \(job.sourcePath) → \(path)")
                try finishPublished(job)
            case .failed(let stage, let message, let code):
                if try scheduleRetry(job, code: code, message: message) { return }
                try finishFailed(job, message: message, stage: stage)
            case .waitingForSpace(let stage, let message, let need):
                logger.warning("job \(jobID) is waiting for space (\(stage)): \(message)")
                waitForSpace(jobID, need: need)
            }
        } catch {
            logger.error("job \(jobID): cannot record its end: \(error)")
        }
    }

    private func finishPublished(_ job: JobRecord) throws {
        guard job.state == .published else { return }
        try? FileManager.default.removeItem(at: runner.workDirectory(of: job.id))
        let members = archiveMembers(of: job)
        defer { for member in members { taken.remove(member.name) } }
        CrashPoints.hit("before-archive")
        if configuration.archiveProcessed {
            let archived = try SourceArchiver(watchDirectory: configuration.watchDir)
                .archive(members, to: .processed)
            try journal.transition(job: job.id, to: .archived, stage: nil,
                                   detail: archived.map(\.path).joined(separator: ", "))
        } else {
            try journal.transition(job: job.id, to: .archived, stage: nil, detail: "archive_processed: false; source left in place")
        }
        CrashPoints.hit("after-archive")
    }

    /// The job's source with the files that belong to it (extents, an OVF's disks), so
    /// they move together; the source carries the identity the journal recorded.
    private func archiveMembers(of job: JobRecord) -> [SourceArchiver.Member] {
        let name = Self.queueName(of: job)
        let others = currentGrouping().job(containing: name).map { $0.members.filter { $0 != name } } ?? []
        return [.init(name: name, identity: FileIdentity(device: job.identity.device, inode: job.identity.inode))]
            + others.map { .init(name: $0) }
    }

    /// Failures that may pass (a tool crash, a full disk) are retried with backoff; bad
    /// input is not. Returns whether a retry was scheduled.
    private func scheduleRetry(_ job: JobRecord, code: StageError.Code?, message: String) throws -> Bool {
        let policy = configuration.retryPolicy
        let retryable: Set<StageError.Code> = [.toolFailed, .ioFailed, .noSpace]
        guard policy.enabled, let code, retryable.contains(code), job.state == .stageFailed else { return false }
        let retriesSoFar = try journal.history(job: job.id).filter { $0.to == .retrying }.count
        guard retriesSoFar < policy.maxRetries else { return false }
        let delay = policy.retryDelaySeconds * pow(policy.backoffMultiplier, Double(retriesSoFar))
        try journal.transition(job: job.id, to: .retrying, stage: nil,
                               detail: "retry \(retriesSoFar + 1)/\(policy.maxRetries) in \(Int(delay)) s after: \(message)")
        logger.warning("job \(job.id) failed (\(message)); retry \(retriesSoFar + 1)/\(policy.maxRetries) in \(Int(delay)) s")
        Task {
            try? await Task.sleep(for: .seconds(delay))
            self.requeueAfterRetryDelay(job.id)
        }
        return true
    }

    /// Polls free space (only while a job waits for it) and resumes the job when enough
    /// has returned: what the stage estimated it needs, on the filesystem it needs it on;
    /// without an estimate (a write hit ENOSPC), twice what was free when it failed and at
    /// least 64 MiB.
    private func waitForSpace(_ jobID: Int64, need: SpaceNeed?) {
        let (workDir, outputDir) = (configuration.workDir, configuration.outputDir)
        let freeNow: @Sendable () -> UInt64 = {
            // A need names the job's own directory; should it vanish, the work root's filesystem.
            if let need { return FreeSpace.bytes(at: need.directory) ?? FreeSpace.bytes(at: workDir) ?? 0 }
            return [workDir, outputDir].compactMap(FreeSpace.bytes(at:)).min() ?? 0
        }
        let needed = need?.bytes ?? max(64 << 20, 2 * freeNow())
        waitingForSpace.insert(jobID)
        Task {
            while !self.stopping {
                try? await Task.sleep(for: .seconds(self.configuration.spaceCheckSeconds))
                if freeNow() >= needed { break }
            }
            self.resumeAfterSpaceReturned(jobID)
        }
    }

    private func resumeAfterSpaceReturned(_ jobID: Int64) {
        waitingForSpace.remove(jobID)
        guard !stopping else { return }  // stays waiting-for-space; the next start resumes it
        do {
            try journal.transition(job: jobID, to: .resumed, stage: nil, detail: "space is available again")
            logger.info("job \(jobID): space is available again; resuming")
            pending.append(jobID)
            schedule()
        } catch {
            logger.error("job \(jobID): cannot resume: \(error)")
        }
    }

    private func requeueAfterRetryDelay(_ jobID: Int64) {
        guard !stopping else { return }  // stays `retrying`; the next start claims it
        do {
            try journal.transition(job: jobID, to: .claimed, stage: nil, detail: "retry")
            pending.append(jobID)
            schedule()
        } catch {
            logger.error("job \(jobID): cannot retry: \(error)")
        }
    }

    private func finishFailed(_ job: JobRecord, message: String, stage: String?, code: String? = nil) throws {
        if job.state != .failed {
            try journal.transition(job: job.id, to: .failed, stage: nil, detail: message)
        }
        runner.releaseReservation(jobID: job.id)
        let history = try journal.history(job: job.id).map { "\($0.at) \($0.from?.rawValue ?? "∅") → \($0.to.rawValue) \($0.stage ?? "") \($0.detail ?? "")" }
        let report = ErrorReport.make(sourcePath: job.sourcePath, error: message, stage: stage, jobID: String(job.id),
                                      attempt: job.attempt, history: history, version: Hyper2KVMVersion.current, code: code)
        let members = archiveMembers(of: job)
        defer { for member in members { taken.remove(member.name) } }
        let archived = try SourceArchiver(watchDirectory: configuration.watchDir)
            .archive(members, to: .errors)
        if let path = archived.first?.path {
            let reportPath = try ErrorReportWriter(watchDirectory: configuration.watchDir).write(report, forArchivedSource: path)
            logger.error("❌ Failed to process \(job.sourcePath): \(message) — see \(reportPath)")
        }
    }

    /// One line for systemd's STATUS= and the log.
    func statusLine() -> String {
        "\(running.count) running, \(pending.count) queued, \(tracker.trackedNames.count) arriving"
            + (waitingForSpace.isEmpty ? "" : ", \(waitingForSpace.count) waiting for space")
    }

    // MARK: - Stop

    func shutdown(grace: Duration) async {
        guard !stopping else { return }
        stopping = true
        stopFlag.set()
        wakeStabilityChecks()
        let deadline = ContinuousClock.now + grace
        while !running.isEmpty && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(200))
        }
        for (jobID, task) in running {
            logger.notice("interrupting job \(jobID)")
            task.cancel()
        }
    }

    func waitForRunningJobs() async {
        for task in running.values { await task.value }
    }

    /// Written beside a duplicate archived in `.processed/`, so the operator sees why it was not converted.
    struct DuplicateNote: Encodable {
        let duplicate_of_job: Int64
        let original_source: String
        let output: String?
        let sha256: String
        let job: Int64
    }

    static func queueName(of job: JobRecord) -> String {
        URL(fileURLWithPath: job.sourcePath).lastPathComponent
    }
}

/// Free bytes for unprivileged writers on the filesystem holding `path`.
enum FreeSpace {
    static func bytes(at path: String) -> UInt64? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        return UInt64(info.f_bavail) * UInt64(info.f_frsize)
    }
}
