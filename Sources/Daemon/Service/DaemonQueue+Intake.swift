import Foundation
import Journal
import Stages
import SystemSupport

/// Intake: queue files are watched until stable, grouped into jobs (an OVF with its disks,
/// a descriptor with its extents), checked for duplicates, and claimed through the job's
/// lifecycle; a file that cannot become a job goes to `.errors/` with a report.
extension DaemonQueue {
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
        let folders = (try? QueueDirectoryListing.exportFolderNames(in: configuration.watchDir)) ?? []
        for name in names + folders where !taken.contains(name) {
            if case .candidate = QueueEntryFilter.classify(name) {
                tracker.noteArrival(name, .discovered, at: now)
            } else if folders.contains(name) {
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
            guard !taken.contains(event.name) else { return }
            if event.isDirectory {
                // Perhaps a Hyper-V export arriving; whether it is one is decided once it settles.
                if !event.name.hasPrefix(".") { tracker.noteArrival(event.name, event.kind == .movedIn ? .movedIn : .written, at: .now) }
                wakeStabilityChecks()
                return
            }
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
                await arrivals.wait()
            }
        }
    }

    func wakeStabilityChecks() {
        arrivals.signal()
    }

    /// Returns when the next check is due, or nil when no file is waiting.
    func evaluate() -> ContinuousClock.Instant? {
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
    func intakeStableFiles(_ stable: [String]) {
        let grouping = currentGrouping()
        let stillSettling = Set(tracker.trackedNames)
        for name in stable.sorted() {
            if QueueDirectoryListing.isFolder(name, in: configuration.watchDir) {
                intakeFolder(name)
                continue
            }
            if let (lead, set) = grouping.refusedSet(containing: name) {
                guard set.members.allSatisfy({ !stillSettling.contains($0) && !taken.contains($0) }) else { continue }
                logger.error("refusing \(set.members.joined(separator: ", ")): \(set.reason)")
                rejectUnqueued(name: lead, members: set.members, message: "\(configuration.watchDir)/\(lead): \(set.reason)")
                continue
            }
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

    // MARK: - Jobs

    func intake(_ name: String, members: [String]) {
        guard !stopping, !taken.contains(name) else { return }
        let source = URL(fileURLWithPath: configuration.watchDir).appendingPathComponent(name)
        do {
            let identity = try JobIntake.identity(of: source)
            let earlier = try journal.jobs(matchingIdentity: identity).filter { $0.sourcePath == source.path }
            if let done = earlier.first(where: { $0.state == .published || $0.state == .archived }) {
                logger.info("\(name) was already converted by job \(done.id); archiving it")
                // Converted, perhaps not archived yet (else nothing is left to do).
                var lifecycle = try lifecycle(of: done.id)
                try perform(lifecycle.handle(.restarted(reason: "found again in the queue", crash: nil, claimant: ""), now: .now),
                            jobID: done.id)
                return
            }
            taken.formUnion(members)
            // A folder has no one content digest: never a duplicate.
            let sameSize = configuration.enableDeduplication && !QueueDirectoryListing.isFolder(name, in: configuration.watchDir) ? try journal.convertedJobs(withSourceSize: identity.size) : []
            guard !sameSize.isEmpty else {
                try claim(name, members: members, sha256: nil)
                return
            }
            // Only a file the size of an earlier conversion is hashed: most drops cost no extra read.
            spawn { [self] in
                // The same digest the convert stage records (`SourceDigest.identityKey`).
                let digest = try? await SourceDigest.compute(source, label: "h2k-dup-sha256").identityKey
                await finishIntake(name, members: members, sha256: digest, candidates: sameSize)
            }
        } catch {
            taken.subtract(members)
            logger.error("cannot queue \(name): \(error)")
            rejectUnqueued(name: name, message: String(describing: error))
        }
    }

    func finishIntake(_ name: String, members: [String], sha256: String?, candidates: [JobRecord]) {
        let source = URL(fileURLWithPath: configuration.watchDir).appendingPathComponent(name)
        do {
            if let sha256, let original = candidates.first(where: { $0.sourceSHA256 == sha256 }) {
                let duplicate = try JobIntake.recordDuplicate(source: source, of: original, sha256: sha256, journal: journal,
                                                              policy: runner.policy)
                let archived = try SourceArchiver(watchDirectory: configuration.watchDir)
                    .archive(members.map { SourceArchiver.Member(name: $0) }, to: .processed)
                if let path = archived.first?.path {
                    let note = DuplicateNote(duplicate_of_job: original.id, original_source: original.sourcePath,
                                             output: original.outputPath, sha256: sha256, job: duplicate.id)
                    let notePath = PathText.parent(of: path) + "/"
                        + QueueFileName.companionName(of: PathText.lastComponent(of: path), suffix: ".duplicate.json")
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

    func claim(_ name: String, members: [String], sha256: String?) throws {
        guard !stopping else {
            taken.subtract(members)  // found again by the next start's scan
            return
        }
        let source = URL(fileURLWithPath: configuration.watchDir).appendingPathComponent(name)
        let detail = members.count > 1 ? "found in \(configuration.watchDir) with \(members.dropFirst().joined(separator: ", "))"
                                       : "found in \(configuration.watchDir)"
        let job = try JobIntake.claimNewJob(source: source, journal: journal, vmName: configuration.conversion.vmName,
                                            detail: detail, sourceSHA256: sha256, policy: runner.policy)
        logger.info("📥 New file queued: \(name) (job \(job.id))")
        pending.append(job.id)
        schedule()
    }

    /// A file that could not even become a job (unknown type, unreadable) still goes to
    /// `.errors/` with a report, so the operator sees why and the queue stays clean.
    func rejectUnqueued(name: String, members: [String]? = nil, message: String) {
        let source = configuration.watchDir + "/" + name
        let report = ErrorReport.make(sourcePath: source, error: message, stage: "intake", jobID: nil, attempt: nil,
                                      version: Hyper2KVMVersion.current)
        do {
            let archived = try SourceArchiver(watchDirectory: configuration.watchDir)
                .archive((members ?? [name]).map { SourceArchiver.Member(name: $0) }, to: .errors)
            if let path = archived.first?.path {
                _ = try ErrorReportWriter(watchDirectory: configuration.watchDir).write(report, forArchivedSource: path)
            }
        } catch {
            logger.error("cannot move \(name) to .errors: \(error)")
        }
    }

    /// Written beside a duplicate archived in `.processed/`, so the operator sees why it was not converted.
    struct DuplicateNote: Encodable {
        let duplicate_of_job: Int64
        let original_source: String
        let output: String?
        let sha256: String
        let job: Int64
    }

}
