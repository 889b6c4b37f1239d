import Metrics
import Stages

/// The job figures only the running daemon sees (the journal keeps the message of a failure,
/// not its code), through swift-metrics: a no-op until a backend is bootstrapped.
enum JobMetrics {
    static let failuresLabel = "hyper2kvm_job_failures_total"

    /// A job failed for good (no retry left), by `StageError.Code`, "unknown" for other errors.
    static func failed(code: StageError.Code?) {
        Counter(label: failuresLabel, dimensions: [("code", code?.rawValue ?? "unknown")]).increment()
    }
}
