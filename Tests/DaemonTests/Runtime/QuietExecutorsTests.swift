@_spi(ExperimentalCustomExecutors) @_spi(ExperimentalScheduling) import _Concurrency
import Foundation
import Testing
@testable import Daemon

/// The thread pool that replaces libdispatch's as Swift concurrency's executor in the
/// `hyper2kvm` process. Here it serves tasks that prefer it; the process-wide install is
/// proven by every test that runs the binary, and by the idle-daemon test.
@Suite struct QuietExecutorsTests {
    /// Which pool thread this is ("" for any other thread).
    private static func currentThreadName() -> String {
        Thread.current.threadDictionary[ThreadPoolExecutor.threadMarker] as? String ?? ""
    }

    @Test func tasksThatPreferThePoolRunOnItsThreads() async throws {
        let pool = ThreadPoolExecutor(threads: 2, name: "h2k-test")
        defer { pool.shutdown() }
        let names = await withTaskGroup(of: String.self) { group in
            for _ in 0..<500 {
                group.addTask(executorPreference: pool) { Self.currentThreadName() }
            }
            return await group.reduce(into: Set<String>()) { $0.insert($1) }
        }
        #expect(!names.isEmpty && names.isSubset(of: ["h2k-test-0", "h2k-test-1"]), "\(names)")
    }

    // The test process's own executor may be starved for minutes by other suites under
    // load, so what is timed here happens on the pool, and the test thread waits by
    // blocking, not by sleeping on that executor.
    @Test func aSleepIsAJobScheduledOnThePoolNotATimerElsewhere() async throws {
        let pool = ThreadPoolExecutor(threads: 2, name: "h2k-sleep")
        defer { pool.shutdown() }
        let started = ContinuousClock.now
        let sleeper = Task(executorPreference: pool) {
            try await Task.sleep(for: .seconds(2))
            return Self.currentThreadName()
        }
        // The sleep waits in the pool's own list of timed jobs.
        var seen = 0
        while seen == 0 && ContinuousClock.now - started < .seconds(2) {
            seen = pool.scheduledJobs
            usleep(1_000)
        }
        let name = try await sleeper.value
        #expect(seen == 1)
        #expect(ContinuousClock.now - started >= .seconds(2))
        #expect(name.hasPrefix("h2k-sleep-"), "\(name)")
        #expect(pool.scheduledJobs == 0)
    }

    @Test func sleepsEndInDeadlineOrder() async throws {
        let pool = ThreadPoolExecutor(threads: 1, name: "h2k-order")
        defer { pool.shutdown() }
        // Deadlines a second away, all set before the first could pass.
        let base = ContinuousClock.now + .seconds(1)
        let order = await withTaskGroup(of: Int.self) { group in
            for offset in [250, 50, 150, 100, 200] {
                group.addTask(executorPreference: pool) {
                    try? await Task.sleep(until: base + .milliseconds(offset), clock: .continuous)
                    return offset
                }
            }
            return await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(order == [50, 100, 150, 200, 250])
    }

    @Test func aSleepLongerThanTimespecCanHoldDoesNotTrap() async throws {
        let pool = ThreadPoolExecutor(threads: 1, name: "h2k-forever")
        defer { pool.shutdown() }
        let sleeper = Task(executorPreference: pool) { try await Task.sleep(for: .seconds(Int64.max / 2)) }
        let other = Task(executorPreference: pool) { 42 }
        #expect(await other.value == 42)
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
    }

    @Test func aCancelledSleepEndsAtOnce() async throws {
        let pool = ThreadPoolExecutor(threads: 2, name: "h2k-cancel")
        defer { pool.shutdown() }
        let started = ContinuousClock.now
        let sleeper = Task(executorPreference: pool) { try await Task.sleep(for: .seconds(3600)) }
        try await Task.sleep(for: .milliseconds(50))
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        // Far less than the hour asked for, however slow the machine.
        #expect(ContinuousClock.now - started < .seconds(1800))
    }
}
