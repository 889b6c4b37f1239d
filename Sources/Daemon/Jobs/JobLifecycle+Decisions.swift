import Journal
import Stages

extension JobLifecycle {
    /// What to do about `event`, given where the job is. Events that make no sense in the
    /// current state (a late timer, a second stop) return no action.
    public mutating func handle(_ event: Event, now: Instant) -> [Action] {
        switch event {
        case .claim(let detail, let claimant):
            guard state == nil else { return [] }
            return [move(.discovered, detail: detail), move(.stable, detail: "complete on arrival"),
                    move(.claimed, detail: claimant), .enqueue(alone: false)]
        case .duplicate(let detail):
            guard state == nil else { return [] }
            return [move(.discovered, detail: "found in the queue"), move(.duplicate, detail: detail)]
                + (policy.fromQueue ? [.archive(.processed)] : [])
        case .restarted(let reason, let crash, let claimant):
            return restart(reason: reason, crash: crash, claimant: claimant)
        case .nextStage(let name, let skipReason, let detail):
            guard isRunning else { return [] }
            if stopping {
                // Shutting down: no new stage starts; the next start resumes here.
                return [move(.interrupted, stage: nil, detail: "stopped before \(name)"), .end(.interrupted)]
            }
            if let skipReason { return [move(.stageSkipped, stage: name, detail: skipReason)] }
            return [move(.stageStarted, stage: name, detail: detail), .runStage(name)]
        case .stageFinished(let name, let detail, let facts):
            guard state == .stageStarted else { return [] }
            return [move(.stageCompleted, stage: name, detail: detail)] + (facts.sourceDigest.map { [.recordSourceDigest($0)] } ?? [])
        case .stageInterrupted(let name):
            guard state == .stageStarted else { return [] }
            return [move(.interrupted, stage: name, detail: "stopped during \(name)"), .end(.interrupted)]
        case .stageFailed(let name, let code, let message, let need):
            guard state == .stageStarted else { return [] }
            return stageFailed(name, code: code, message: message, need: need, now: now)
        case .sourceChanged(let stage, let change, let source):
            guard isRunning else { return [] }
            let detail = "the source changed while the job ran (\(change)); outputs discarded"
            let message = "\(source): \(detail)"
            return [move(.failed, detail: detail), .discardWork]
                + failedForGood(message: message, stage: stage)
                + [.end(.failed(stage: stage, message: message, code: .sourceChanged))]
        case .pipelineDone(let directory, let result):
            guard isRunning, Rules.isLegal(from: state, to: .published) else { return [] }
            return [.recordOutput(directory), move(.published, detail: result.map { "\($0) → \(directory)" } ?? directory), .discardWork]
                + (policy.fromQueue ? [.archive(.processed)] : []) + [.end(.published(outputPath: directory, result: result))]
        case .runFailed(let message):
            guard let state, state != .failed, !state.isTerminal, state != .published else { return [] }
            let stageFailed = state == .stageStarted ? [move(.stageFailed, stage: stage, detail: message)] : []
            return stageFailed + [move(.failed, detail: message), .recordError(message)] + failedForGood(message: message, stage: stage)
                + [.end(.failed(stage: stage, message: message, code: nil))]
        case .sourceArchived(let detail):
            guard state == .published else { return [] }
            return [move(.archived, detail: detail)]
        case .spaceReturned:
            // Stopping: the job stays waiting for space; the next start resumes it.
            guard state == .waitingForSpace, !stopping else { return [] }
            return [move(.resumed, detail: "space is available again"), .enqueue(alone: false)]
        case .retryDue:
            // Stopping: the job stays `retrying`; the next start claims it.
            guard state == .retrying, !stopping else { return [] }
            return [move(.claimed, detail: "retry"), .enqueue(alone: false)]
        case .stopRequested:
            stopping = true
            return []
        }
    }

    /// In its pipeline, between stages: the states a runner may move on from.
    var isRunning: Bool {
        [.claimed, .resumed, .stageCompleted, .stageSkipped].contains(state)
    }

    private mutating func stageFailed(_ name: String, code: StageError.Code?, message: String, need: SpaceNeed?,
                                      now: Instant) -> [Action] {
        if code == .noSpace {
            // Partial outputs are gone; the job resumes when the space returns.
            return [move(.waitingForSpace, stage: name, detail: message), .waitForSpace(need),
                    .end(.waitingForSpace(stage: name, message: message))]
        }
        var actions = [move(.stageFailed, stage: name, detail: message), .recordError(message)]
        let retry = policy.retry
        if retry.enabled, let code, Policy.retryable.contains(code), retries < retry.maxRetries {
            let seconds = policy.delaySeconds(afterRetries: retries)
            let delay = Duration.seconds(seconds)
            actions.append(move(.retrying, detail: "retry \(retries + 1)/\(retry.maxRetries) in \(Int(seconds)) s after: \(message)"))
            return actions + [.retry(at: now.advanced(by: delay), after: delay), .end(.retrying)]
        }
        return actions + [move(.failed, detail: message)] + failedForGood(message: message, stage: name)
            + [.end(.failed(stage: name, message: message, code: code))]
    }

    /// After `failed`: the reservation goes back, the source goes to `.errors/` with a report.
    private func failedForGood(message: String, stage: String?) -> [Action] {
        [.releaseReservation]
            + (policy.fromQueue ? [.archive(.errors(message: message, stage: stage, code: nil))] : [])
    }

    private mutating func restart(reason: String, crash: String?, claimant: String) -> [Action] {
        guard let state else { return [] }
        switch state {
        case .published:
            // Converted but not archived yet.
            return [.discardWork] + (policy.fromQueue ? [.archive(.processed)] : [])
        case .stageFailed:
            // Died between the failure and its retry decision: the failure stands.
            let message = error ?? "failed before the daemon stopped"
            return [move(.failed, detail: message)] + failedForGood(message: message, stage: stage)
        case .retrying:
            return [move(.claimed, detail: "retry after restart"), .enqueue(alone: false)]
        case .discovered:
            return [move(.stable, detail: "complete on arrival (\(reason))"), move(.claimed, detail: "\(claimant) (\(reason))"),
                    .enqueue(alone: false)]
        case .stable:
            return [move(.claimed, detail: "\(claimant) (\(reason))"), .enqueue(alone: false)]
        case .stageStarted where crash != nil:
            return crashedInStage(note: crash ?? "")
        case .interrupted:
            return [move(.resumed, detail: "resuming after: \(reason)"), .enqueue(alone: false)]
        case .claimed, .stageStarted, .stageCompleted, .stageSkipped, .resumed, .waitingForSpace:
            let why = crash == nil ? reason : "\(reason) after a crash while no stage of this job ran"
            return [move(.interrupted, stage: stage, detail: why), move(.resumed, detail: "resuming after: \(why)"),
                    .enqueue(alone: false)]
        case .failed, .archived, .duplicate:
            return []
        }
    }

    /// The previous run died of a signal inside this job's stage: resumed alone (so a second
    /// crash is blamed on the right job), or failed as poison after `PoisonRule`'s count.
    private mutating func crashedInStage(note: String) -> [Action] {
        let interrupted = move(.interrupted, stage: stage, detail: note)
        guard PoisonRule.isPoison(crashes) else {
            return [interrupted, move(.resumed, detail: "resuming after: \(note)"), .enqueue(alone: true)]
        }
        let message = JobRecovery.poisonMessage(crashes: crashes)
        return [interrupted, move(.failed, detail: message), .recordError(message), .releaseReservation]
            + (policy.fromQueue ? [.archive(.errors(message: message, stage: stage, code: JobRecovery.poisonCode))] : [])
    }

    /// The journal action for a move, checked against `Rules`, and the state it leaves.
    /// An illegal move is a bug in this type; the journal refuses it too.
    private mutating func move(_ to: JobState, stage: String? = nil, detail: String) -> Action {
        assert(Rules.isLegal(from: state, to: to), "\(String(describing: state)) → \(to)")
        note(to, stage: stage, detail: detail)
        return .journal(to, stage: stage, detail: detail)
    }
}
