import Metrics

/// The journal's figures for swift-metrics. Until the daemon bootstraps a metrics backend (the
/// HTTP endpoint does) these go to swift-metrics' no-op handler and cost a lock-free lookup.
enum JournalMetrics {
    static let commitLabel = "hyper2kvm_journal_commit_seconds"

    static func commitLatency(since started: ContinuousClock.Instant) {
        let parts = (ContinuousClock.now - started).components
        // Saturating: a commit cannot take 292 years, but a clock is no place to trap.
        let (scaled, overflow) = parts.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let nanoseconds = overflow ? Int64.max : scaled &+ parts.attoseconds / 1_000_000_000
        Timer(label: commitLabel).recordNanoseconds(nanoseconds)
    }
}
