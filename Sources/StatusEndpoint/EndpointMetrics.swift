import Journal
import Prometheus
import Stages

/// The Prometheus series the endpoint exports from the journal and the filesystems. Those the
/// daemon's code records as it works (journal commit latency, failures by error code) come
/// through swift-metrics into the same registry (`MetricsBootstrap`).
final class EndpointMetrics: Sendable {
    let registry: PrometheusCollectorRegistry

    /// The stage histograms' buckets, in seconds: a probe takes a second, a copy of a large
    /// disk hours.
    static let stageBuckets: [Double] = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14_400]
    /// States that wait for a worker or a condition, not for a stage to finish.
    static let queuedStates: Set<JobState> = [.discovered, .stable, .retrying, .waitingForSpace, .interrupted]

    private let queueDepth: Gauge
    private let throughput: Gauge
    private let bytesRead: Counter
    private let bytesWritten: Counter
    private let spaceFloor: Gauge

    init(registry: PrometheusCollectorRegistry, version: String) {
        self.registry = registry
        queueDepth = registry.makeGauge(descriptor: Self.name(
            "queue_depth", "Jobs waiting for a worker, a retry or disk space."))
        throughput = registry.makeGauge(descriptor: Self.name(
            "throughput_bytes_per_second", "Bytes per second of the stages running now (sum over jobs)."))
        bytesRead = registry.makeCounter(descriptor: Self.name(
            "source_bytes_read_total", "Bytes of the sources whose conversion completed, as the journal records them."))
        bytesWritten = registry.makeCounter(descriptor: Self.name(
            "output_bytes_written_total", "Bytes of the outputs the journal records (disks, domain.xml, metadata, checksums)."))
        spaceFloor = registry.makeGauge(descriptor: Self.name(
            "space_floor_bytes", "Free space below which /readyz reports not ready and jobs wait."))
        spaceFloor.set(Double(SpaceCheck.reserveBytes))
        registry.makeGauge(descriptor: Self.name("build_info", "The running build; always 1."), labels: [("version", version)])
            .set(1.0)
        for state in JobState.allCases { jobsGauge(state).set(0.0) }
    }

    /// The full name is given whole (unit included) so a grep for it finds this line.
    static func name(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "hyper2kvm", metricName: name, unitName: "", helpText: help)
    }

    private func jobsGauge(_ state: JobState) -> Gauge {
        registry.makeGauge(descriptor: Self.name("jobs", "Jobs in the journal by state."), labels: [("state", state.rawValue)])
    }

    /// Sets every series from one reading. `previous`: the journal totals of the last reading
    /// (the counters grow by the difference, so they equal the journal's totals).
    func update(_ reading: EndpointReading, previous: JournalTotals?) {
        var counts: [JobState: Int] = [:]
        for job in reading.jobs { counts[job.state, default: 0] += 1 }
        for state in JobState.allCases { jobsGauge(state).set(Double(counts[state] ?? 0)) }
        queueDepth.set(Double(reading.jobs.filter { Self.queuedStates.contains($0.state) }.count))
        throughput.set(reading.estimates.values.reduce(0) { $0 + $1.bytesPerSecond })
        let before = previous ?? JournalTotals(sourceBytesConverted: 0, artifactBytes: 0)
        if reading.totals.sourceBytesConverted > before.sourceBytesConverted {
            bytesRead.increment(by: reading.totals.sourceBytesConverted - before.sourceBytesConverted)
        }
        if reading.totals.artifactBytes > before.artifactBytes {
            bytesWritten.increment(by: reading.totals.artifactBytes - before.artifactBytes)
        }
        for (stage, seconds) in reading.finishedStages {
            registry.makeValueHistogram(descriptor: Self.name("stage_duration_seconds", "How long completed stages took, by stage."),
                                        labels: [("stage", stage)], buckets: Self.stageBuckets).record(seconds)
        }
        for space in reading.spaces {
            let help = "Free bytes, as an unprivileged writer sees them, of the filesystem holding each directory."
            registry.makeGauge(descriptor: Self.name("filesystem_free_bytes", help), labels: [("directory", space.key)])
                .set(Double(space.value.available))
        }
    }
}
