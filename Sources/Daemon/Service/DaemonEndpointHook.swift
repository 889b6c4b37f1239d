import Journal
import Logging
import ServiceLifecycle
import Synchronization

/// What the running daemon knows about its own health that the journal does not hold:
/// read by the HTTP endpoint's `/readyz`.
public final class DaemonHealth: Sendable {
    private let watching = Atomic<Bool>(false)
    public init() {}
    /// True while the queue watcher delivers events (set when it starts, cleared when its stream ends).
    public var watcherAlive: Bool { watching.load(ordering: .relaxed) }
    func setWatcherAlive(_ alive: Bool) { watching.store(alive, ordering: .relaxed) }
}

/// What a service added to the daemon's group from outside this module (the HTTP endpoint)
/// may read: the journal, the effective configuration and the daemon's health. It gets no
/// way to change the queue.
public struct DaemonContext: Sendable {
    public let configuration: Configuration
    public let journal: JobJournal
    public let health: DaemonHealth
    public let logger: Logger

    public init(configuration: Configuration, journal: JobJournal, health: DaemonHealth, logger: Logger) {
        self.configuration = configuration
        self.journal = journal
        self.health = health
        self.logger = logger
    }
}

/// Builds the extra services of the daemon's group; none by default. The launcher passes the
/// endpoint's, so the Daemon module does not depend on a web server.
public typealias DaemonExtraServices = @Sendable (DaemonContext) -> [any Service]
