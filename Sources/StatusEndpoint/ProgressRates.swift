import Journal

/// Rate and ETA of running jobs, from the progress fraction the journal keeps (written at most
/// every 2 s by the runner). A pure value fed with samples: the first sample of a job's stage
/// is the baseline, so the rate is the stage's average so far, steadier than the last step.
/// Bytes per second are the fraction's rate times the source's size: right for the copy
/// stages, which read the source end to end. Per-disk figures, where the journal gets them,
/// are shown by the page as they are.
struct ProgressRates: Sendable {
    struct Estimate: Sendable, Equatable, Codable {
        var bytesPerSecond: Double
        /// Seconds until the stage ends at this rate; nil while nothing has moved.
        var etaSeconds: Double?

        enum CodingKeys: String, CodingKey {
            case bytesPerSecond = "bytes_per_second"
            case etaSeconds = "eta_seconds"
        }
    }

    private struct Baseline: Sendable {
        let stage: String?
        let attempt: Int
        let fraction: Double
        let seconds: Double
    }

    private var baselines: [Int64: Baseline] = [:]

    /// `now`: seconds on a monotonic clock. Returns an estimate for each job that moved since
    /// its stage's first sample; forgets jobs that are no longer running.
    mutating func sample(_ jobs: [JobRecord], now: Double) -> [Int64: Estimate] {
        var estimates: [Int64: Estimate] = [:]
        var seen: Set<Int64> = []
        for job in jobs where job.state == .stageStarted {
            guard let fraction = job.progress else { continue }
            seen.insert(job.id)
            let baseline = baselines[job.id]
            guard let baseline, baseline.stage == job.stage, baseline.attempt == job.attempt, fraction >= baseline.fraction else {
                baselines[job.id] = Baseline(stage: job.stage, attempt: job.attempt, fraction: fraction, seconds: now)
                continue
            }
            let elapsed = now - baseline.seconds
            let moved = fraction - baseline.fraction
            guard elapsed > 0, moved > 0 else { continue }
            let perSecond = moved / elapsed
            estimates[job.id] = Estimate(bytesPerSecond: perSecond * Double(max(job.identity.size, 0)),
                                         etaSeconds: (1 - fraction) / perSecond)
        }
        baselines = baselines.filter { seen.contains($0.key) }
        return estimates
    }
}
