import Daemon
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import Metrics
import NIOPosix
import Prometheus
import ServiceLifecycle
import Stages
import Synchronization

/// The daemon's HTTP endpoint as a service of its group, on one event-loop thread of its own:
/// it answers a scrape every few seconds and a page or two, and the daemon idles for days, so
/// it keeps one thread and its stack, not one per core. A port that cannot be bound is logged
/// and the daemon converts on without the endpoint: monitoring must not stop conversions.
public struct HTTPEndpointService: Service {
    let context: DaemonContext
    let registry: PrometheusCollectorRegistry

    public init(context: DaemonContext, registry: PrometheusCollectorRegistry) {
        self.context = context
        self.registry = registry
    }

    /// What the launcher passes to `ConversionDaemon.run`: the endpoint as the group's extra
    /// service, with swift-metrics sending the daemon's own figures to the same registry; none
    /// when `http_listen: off`.
    public static let services: DaemonExtraServices = { context in
        guard context.configuration.httpListen != .off else { return [] }
        let registry = PrometheusCollectorRegistry()
        MetricsBootstrap.bootstrap(registry)
        return [HTTPEndpointService(context: context, registry: registry)]
    }

    public func run() async throws {
        let listen = context.configuration.httpListen
        let logger = context.logger
        let address: BindAddress
        switch listen {
        case .off:
            try? await gracefulShutdown()
            return
        case .tcp(let host, let port):
            address = .hostname(host, port: port)
            if !listen.isLocalOnly {
                logger.warning("http_listen \(listen): the endpoint has no authentication and is reachable from the network")
            }
        case .unixSocket(let path):
            address = .unixDomainSocket(path: path)
            Self.removeStaleSocket(path, logger: logger)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let metrics = EndpointMetrics(registry: registry, version: Hyper2KVMVersion.current)
        let state = EndpointState(context: context, metrics: metrics)
        let running = Atomic<Bool>(false)
        let responder = EndpointRoutes.router(state: state, listen: listen).buildResponder()
        do {
            // HummingbirdCore's server with the router's responder, rather than Hummingbird's
            // `Application`: that one also runs a task that refreshes its cached `Date` header
            // every second, and an idle daemon has no wakeups of its own. The date is
            // formatted per response instead (a few per scrape).
            let server = try HTTPServerBuilder.http1().buildServer(
                configuration: ServerConfiguration(address: address, serverName: nil),
                eventLoopGroup: group, logger: logger,
                responder: { request, writer, channel in
                    let context = BasicRequestContext(source: ApplicationRequestContextSource(channel: channel, logger: logger))
                    var response: Response
                    do {
                        response = try await responder.respond(to: request, context: context)
                    } catch let error as HTTPError {
                        response = EndpointRoutes.respond("\(error.body ?? "\(error.status)")\n", type: "text/plain; charset=utf-8",
                                                          status: error.status)
                    } catch {
                        logger.warning("HTTP endpoint: \(request.method) \(request.uri.path) failed: \(error)")
                        response = EndpointRoutes.respond("internal error\n", type: "text/plain; charset=utf-8", status: .internalServerError)
                    }
                    response.headers[.date] = HTTPDate.now()
                    try await writer.write(response: response.head, body: response.body)
                },
                onServerRunning: { _ in
                    running.store(true, ordering: .relaxed)
                    if case .unixSocket(let path) = listen { chmod(path, 0o660) }
                    logger.notice("🌐 HTTP endpoint on \(listen): /metrics /healthz /readyz /api/v1/jobs and the status page")
                })
            try await server.run()
        } catch {
            if running.load(ordering: .relaxed) {
                logger.warning("HTTP endpoint on \(listen) stopped: \(error)")
            } else {
                logger.error("http_listen \(listen): cannot serve (\(error)); the daemon runs on without the HTTP endpoint")
            }
            try? await gracefulShutdown()
        }
        try? await group.shutdownGracefully()
    }

    /// A socket left by an earlier run would make the bind fail; anything else at that path is
    /// not ours to remove, and the bind then fails and says so.
    static func removeStaleSocket(_ path: String, logger: Logger) {
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else { return }
        if unlink(path) == 0 { logger.info("removed the stale socket \(path) of an earlier run") }
    }
}

/// Sends what the daemon's modules record through swift-metrics (journal commit latency,
/// failures by error code) to the endpoint's registry. Once per process, as swift-metrics asks.
enum MetricsBootstrap {
    private static let done = Mutex(false)

    static func bootstrap(_ registry: PrometheusCollectorRegistry) {
        let first = done.withLock { done in
            defer { done = true }
            return !done
        }
        guard first else { return }
        MetricsSystem.bootstrap(DescribedMetricsFactory(registry: registry))
    }
}

/// swift-prometheus' factory registers what swift-metrics creates without `# HELP` text, which
/// `promtool check metrics` rejects (and the registry stops the process if the same name is
/// later registered with help). The daemon's own series are created here with their help
/// text and buckets; anything else goes to the plain factory.
struct DescribedMetricsFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry
    let plain: PrometheusMetricsFactory

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        plain = PrometheusMetricsFactory(registry: registry)
    }

    static let counterHelp = [
        "hyper2kvm_job_failures_total": "Jobs that failed for good since the daemon started, by error code.",
    ]
    static let timerHelp = [
        "hyper2kvm_journal_commit_seconds": "Time of each journal write transaction, its fsync included.",
    ]
    /// Commits are fsyncs: sub-millisecond on a good disk, seconds on a struggling one.
    static let commitBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
    ]

    static func descriptor(_ label: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: help)
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        guard let help = Self.counterHelp[label] else { return plain.makeCounter(label: label, dimensions: dimensions) }
        return registry.makeCounter(descriptor: Self.descriptor(label, help), labels: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        guard let help = Self.timerHelp[label] else { return plain.makeTimer(label: label, dimensions: dimensions) }
        return registry.makeDurationHistogram(descriptor: Self.descriptor(label, help), labels: dimensions, buckets: Self.commitBuckets)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        plain.makeFloatingPointCounter(label: label, dimensions: dimensions)
    }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        plain.makeRecorder(label: label, dimensions: dimensions, aggregate: aggregate)
    }
    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        plain.makeMeter(label: label, dimensions: dimensions)
    }
    func destroyCounter(_ handler: any CounterHandler) { plain.destroyCounter(handler) }
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { plain.destroyFloatingPointCounter(handler) }
    func destroyRecorder(_ handler: any RecorderHandler) { plain.destroyRecorder(handler) }
    func destroyMeter(_ handler: any MeterHandler) { plain.destroyMeter(handler) }
    func destroyTimer(_ handler: any TimerHandler) { plain.destroyTimer(handler) }
}

/// The `Date` header's IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), formatted when asked.
enum HTTPDate {
    static func now() -> String {
        var seconds = time(nil)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%a, %d %b %Y %H:%M:%S GMT", &parts)
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
