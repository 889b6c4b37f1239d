@_spi(ExperimentalCustomExecutors) @_spi(ExperimentalScheduling) import _Concurrency
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Swift concurrency's executors for the `hyper2kvm` process: a pool of our own threads
/// for tasks and the main thread for the main actor.
///
/// The default executors on Linux run on libdispatch's worker pool, and libdispatch arms
/// a one-second timer to watch that pool as soon as its first worker starts, never to
/// disarm it: an idle daemon woke once a second for nothing. These threads sleep on a
/// condition variable with no timeout while nothing is due, so an idle daemon does not
/// wake at all.
///
/// Blocking work (hashing, libguestfs) already runs on threads of its own
/// (`BlockingWork`), so the pool is as wide as the cooperative pool it replaces: one
/// thread per core, at least two.
public enum QuietExecutors {
    /// Makes these the process's executors. Call first thing in a synchronous `main`,
    /// before any task exists, then hand the main thread to ``runMainThread()``.
    public static func install() {
        _createExecutors(factory: QuietExecutorFactory.self)
    }

    /// Runs main-actor jobs on the calling thread, the process's main thread; never returns.
    public static func runMainThread() -> Never {
        do {
            try QuietExecutorFactory.mainExecutor.run()
        } catch {
            fatalError("the main executor stopped: \(error)")
        }
        fatalError("the main executor stopped")
    }
}

enum QuietExecutorFactory: ExecutorFactory {
    static let mainExecutor: any MainExecutor = MainThreadExecutor()
    static let defaultExecutor: any TaskExecutor =
        ThreadPoolExecutor(threads: max(2, ProcessInfo.processInfo.activeProcessorCount), name: "h2k-pool")
}

/// An executor whose jobs wait in a ``PendingJobs`` until a thread takes them.
protocol PendingJobsExecutor: SchedulingExecutor {
    var jobs: PendingJobs { get }
}

extension PendingJobsExecutor {
    func enqueue(_ job: consuming ExecutorJob) {
        jobs.add(UnownedJob(job))
    }

    func enqueue<C: Clock>(_ job: consuming ExecutorJob, at instant: C.Instant,
                           tolerance: C.Duration?, clock: C) {
        jobs.add(UnownedJob(job), at: instant, clock: clock)
    }

    func enqueue<C: Clock>(_ job: consuming ExecutorJob, after delay: C.Duration,
                           tolerance: C.Duration?, clock: C) {
        jobs.add(UnownedJob(job), at: clock.now.advanced(by: delay), clock: clock)
    }
}

/// Runs jobs on a fixed set of threads of its own, in the order they became due.
final class ThreadPoolExecutor: TaskExecutor, PendingJobsExecutor, @unchecked Sendable {
    // Sendable: all mutable state is inside `jobs`, which locks.
    let jobs = PendingJobs()

    /// The `threadDictionary` key under which a pool thread carries its name.
    static let threadMarker = "hyper2kvm.executor-thread"

    init(threads: Int, name: String) {
        for index in 0..<max(1, threads) {
            let threadName = "\(name)-\(index)"
            let thread = Thread { [jobs, unowned self] in
                // Set from the thread itself, so Foundation passes it on to the kernel (15
                // bytes), where top -H and /proc show it. libdispatch renames a thread that
                // drains one of its queues synchronously, so the pool also marks its threads
                // where only it writes.
                Thread.current.name = threadName
                Thread.current.threadDictionary[Self.threadMarker] = threadName
                while let job = jobs.next() {
                    job.runSynchronously(on: self.asUnownedTaskExecutor())
                }
            }
            thread.start()
        }
    }

    /// Lets the threads end once the jobs due now have run (for tests; the process's pool
    /// lives as long as the process).
    func shutdown() {
        jobs.stop()
    }

    /// Jobs waiting for a deadline (for tests).
    var scheduledJobs: Int { jobs.scheduledCount }
}

/// The main actor's executor: its jobs run on the thread that calls `run()`.
final class MainThreadExecutor: MainExecutor, PendingJobsExecutor, @unchecked Sendable {
    // Sendable: all mutable state is inside `jobs`, which locks.
    let jobs = PendingJobs()

    init() {}

    func run() throws {
        while let job = jobs.next() {
            job.runSynchronously(on: asUnownedSerialExecutor())
        }
    }

    func runUntil(_ condition: () -> Bool) throws {
        while !condition(), let job = jobs.next() {
            job.runSynchronously(on: asUnownedSerialExecutor())
        }
    }

    func stop() {
        jobs.stop()
    }

    var isMainExecutor: Bool { true }

    func isIsolatingCurrentContext() -> Bool? {
        Thread.isMainThread
    }

    func checkIsolated() {
        precondition(Thread.isMainThread, "not on the main thread")
    }
}

/// Jobs due now and jobs due later. Consumers block in ``next()`` on a condition variable:
/// without a timeout when nothing is scheduled, until the earliest deadline otherwise.
final class PendingJobs: @unchecked Sendable {
    // Sendable: every field below is read and written with `mutex` held.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var ready: [UnownedJob] = []
    private var readyHead = 0
    /// Ordered latest first, so the earliest is taken from the end.
    private var timed: [TimedJob] = []
    private var stopped = false

    private struct TimedJob {
        var due: ContinuousClock.Instant
        var job: UnownedJob
        /// For a clock other than the continuous and suspending ones, whose instants we
        /// cannot place on the continuous clock: asked again each time the job looks due.
        var stillEarly: (@Sendable () -> Bool)?
    }

    /// How often a job on a foreign clock is looked at again.
    private static let foreignClockRecheck = Duration.milliseconds(10)

    init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        // Deadlines are waited for on CLOCK_MONOTONIC: a change of wall-clock time must
        // not wake a sleeper early or late.
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func add(_ job: UnownedJob) {
        locked {
            ready.append(job)
            pthread_cond_signal(condition)
        }
    }

    func add<C: Clock>(_ job: UnownedJob, at instant: C.Instant, clock: C) {
        let entry: TimedJob
        if clock is ContinuousClock, let deadline = instant as? ContinuousClock.Instant {
            entry = TimedJob(due: deadline, job: job, stillEarly: nil)
        } else if let suspending = clock as? SuspendingClock, let deadline = instant as? SuspendingClock.Instant {
            entry = TimedJob(due: .now + suspending.now.duration(to: deadline), job: job, stillEarly: nil)
        } else {
            entry = TimedJob(due: .now, job: job, stillEarly: { clock.now < instant })
        }
        locked {
            let index = timed.firstIndex { $0.due <= entry.due } ?? timed.endIndex
            timed.insert(entry, at: index)
            pthread_cond_signal(condition)
        }
    }

    /// The next job that is due, waiting for one as long as it takes; nil after `stop()`.
    func next() -> UnownedJob? {
        locked {
            while !stopped {
                promoteDueJobs()
                if readyHead < ready.count {
                    let job = ready[readyHead]
                    readyHead += 1
                    if readyHead == ready.count {
                        ready.removeAll(keepingCapacity: true)
                        readyHead = 0
                    } else if readyHead >= 1024 && readyHead * 2 >= ready.count {
                        // A queue that never drains must not keep every job it ever ran.
                        ready.removeFirst(readyHead)
                        readyHead = 0
                    }
                    return job
                }
                if let earliest = timed.last {
                    var deadline = Self.monotonicDeadline(after: ContinuousClock.now.duration(to: earliest.due))
                    pthread_cond_timedwait(condition, mutex, &deadline)
                } else {
                    pthread_cond_wait(condition, mutex)
                }
            }
            return nil
        }
    }

    var scheduledCount: Int { locked { timed.count } }

    func stop() {
        locked {
            stopped = true
            pthread_cond_broadcast(condition)
        }
    }

    /// Moves every timed job whose deadline has passed to the ready queue.
    private func promoteDueJobs() {
        let now = ContinuousClock.now
        while let earliest = timed.last, earliest.due <= now {
            timed.removeLast()
            if let stillEarly = earliest.stillEarly, stillEarly() {
                var again = earliest
                again.due = now + Self.foreignClockRecheck
                let index = timed.firstIndex { $0.due <= again.due } ?? timed.endIndex
                timed.insert(again, at: index)
                continue
            }
            ready.append(earliest.job)
        }
    }

    /// At most a day ahead (a sleep of years would overflow `timespec`); a waiter woken
    /// before its job is due simply waits again.
    private static func monotonicDeadline(after wait: Duration) -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let (seconds, attoseconds) = min(max(wait, .zero), .seconds(86_400)).components
        let nanoseconds = Int(now.tv_nsec) + Int(attoseconds / 1_000_000_000)
        now.tv_sec += Int(seconds) + nanoseconds / 1_000_000_000
        now.tv_nsec = nanoseconds % 1_000_000_000
        return now
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }
}
