import Foundation
import Journal
import Stages

/// One job's life as a pure value: it takes what happened (`Event`) and returns what to do
/// (`Action`). Every rule about a job lives here and nowhere else: which transitions are
/// legal (`Rules`), when a failure is retried and after how long, when a job waits for space,
/// how a job found at a start resumes, when a crashing job is poison, when a source is
/// archived and an error report written. The daemon's scheduler, the one-shot `convert`,
/// recovery at start and intake only carry out the actions, so they cannot differ in a rule.
///
/// No I/O and no clock of its own: the caller passes `now`, so a test drives it with a
/// fake instant. It can be rebuilt at any time from the journal (`init(policy:history:error:)`),
/// which is what lets a driver keep no state of its own about a job.
public struct JobLifecycle<Instant: InstantProtocol>: Sendable, Equatable where Instant.Duration == Duration {
    /// The table of legal moves; every `.journal` action this type returns obeys it.
    public typealias Rules = TransitionRules

    public struct Policy: Sendable, Equatable {
        public var retry: Configuration.RetryPolicy
        /// Whether the job's source sits in the queue directory: it is archived at the end
        /// (`.processed/` or `.errors/` with a report). A one-shot `convert` leaves its source alone.
        public var fromQueue: Bool
        /// Failures that may pass (a tool crash, an I/O error); bad input never does.
        public static var retryable: Set<StageError.Code> { [.toolFailed, .ioFailed, .noSpace] }

        public init(retry: Configuration.RetryPolicy, fromQueue: Bool) {
            self.retry = retry
            self.fromQueue = fromQueue
        }

        /// Seconds before retry number `retriesSoFar + 1`: `retry_delay × backoff_multiplier^retriesSoFar`,
        /// capped at `longestDelaySeconds` (a large multiplier must not overflow into a trap).
        public func delaySeconds(afterRetries retriesSoFar: Int) -> Double {
            let seconds = retry.retryDelaySeconds * pow(retry.backoffMultiplier, Double(retriesSoFar))
            return seconds.isFinite ? min(max(seconds, 0), Self.longestDelaySeconds) : Self.longestDelaySeconds
        }

        /// About 68 years: longer than any useful wait, small enough for every conversion.
        public static var longestDelaySeconds: Double { Double(Int32.max) }
    }

    public enum Event: Sendable, Equatable {
        /// A complete, stable queue file (or `convert`'s argument) becomes a job.
        case claim(detail: String, claimant: String)
        /// A new file has the same content as an earlier conversion: journaled, not converted.
        case duplicate(detail: String)
        /// A start found the job where the journal left it. `crash`: the note of the previous
        /// run's death by a fatal signal; `claimant` is who takes a half-claimed job.
        case restarted(reason: String, crash: String?, claimant: String)
        /// The runner reached a stage: `skipReason` when the stage does not apply,
        /// `detail` for the `stage-started` row.
        case nextStage(String, skipReason: String?, detail: String)
        case stageFinished(String, detail: String, StageFacts)
        case stageFailed(String, code: StageError.Code?, message: String, need: SpaceNeed?)
        /// The stage was stopped by a shutdown (its child tools were killed).
        case stageInterrupted(String)
        case sourceChanged(stage: String, change: String, source: String)
        /// `result`: set when the job converted but cannot promise the guest boots
        /// ("converted, boot not ensured: …"); shown in the published transition and the ending.
        case pipelineDone(publishedDirectory: String, result: String? = nil)
        /// The run failed outside any stage (the journal names an unknown input kind…).
        case runFailed(message: String)
        case sourceArchived(detail: String)
        case spaceReturned
        case retryDue
        /// The process is stopping: no new job and no new stage starts.
        case stopRequested
    }

    /// Facts a stage's outputs carry for the job as a whole (typed, so the generic runner
    /// need not know which stage writes which file).
    public struct StageFacts: Sendable, Equatable {
        /// `SourceDigest.identityKey` of the source, when the stage hashed it.
        public var sourceDigest: String?
        public init(sourceDigest: String? = nil) { self.sourceDigest = sourceDigest }
    }

    public enum Archive: Sendable, Equatable {
        case processed
        /// To `.errors/` with a report saying why.
        case errors(message: String, stage: String?, code: String?)
    }

    public enum Action: Sendable, Equatable {
        /// Write this transition (a `stage-completed` carries the stage's artifacts).
        case journal(JobState, stage: String?, detail: String)
        case recordError(String)
        case recordOutput(String)
        case recordSourceDigest(String)
        /// Run this stage now.
        case runStage(String)
        /// The job is ready: run it when a slot is free (`alone`: a crash suspect, run with no other job).
        case enqueue(alone: Bool)
        case retry(at: Instant, after: Duration)
        /// Wait until `need` is free (nil: a write hit ENOSPC with no estimate), then send `spaceReturned`.
        case waitForSpace(SpaceNeed?)
        /// Remove the job's work directory.
        case discardWork
        /// Give back the output directory the job reserved.
        case releaseReservation
        case archive(Archive)
        /// The current run of the job ends here.
        case end(Ending)
    }

    public enum Ending: Sendable, Equatable {
        /// `result`: "converted, boot not ensured: …" when the guest fix could not promise a boot.
        case published(outputPath: String, result: String? = nil)
        case failed(stage: String?, message: String, code: StageError.Code?)
        case retrying
        case waitingForSpace(stage: String, message: String)
        case interrupted
    }

    public let policy: Policy
    public internal(set) var state: JobState?
    /// The stage the job is at: the last one started or skipped.
    public internal(set) var stage: String?
    /// `retrying` transitions so far.
    public internal(set) var retries = 0
    /// Crash notes of the `interrupted` rows in a row (see `PoisonRule`).
    public internal(set) var crashes: [String] = []
    public internal(set) var stopping = false
    /// The failure message the journal recorded for the job.
    public internal(set) var error: String?

    /// A job not yet in the journal.
    public init(policy: Policy) {
        self.policy = policy
    }

    /// The job as its journal history left it.
    public init(policy: Policy, history: [TransitionRecord], error: String?) {
        self.policy = policy
        self.error = error
        for row in history { note(row.to, stage: row.stage, detail: row.detail) }
    }

    /// Follows one transition: the state, the stage, the retry count and the crash streak.
    mutating func note(_ to: JobState, stage: String?, detail: String?) {
        state = to
        // As the journal's job row: only a stage run (started or skipped) changes the stage.
        if to == .stageStarted || to == .stageSkipped { self.stage = stage }
        if to == .retrying { retries += 1 }
        crashes = PoisonRule.streak(crashes, after: to, detail: detail)
    }
}

/// The lifecycle the drivers run on the process's monotonic clock.
public typealias DaemonJobLifecycle = JobLifecycle<ContinuousClock.Instant>
