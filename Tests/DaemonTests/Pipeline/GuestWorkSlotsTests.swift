import Foundation
import Testing
import TestSupport

/// The gate that keeps at most two heavy guest suites running at once.
@Suite struct GuestWorkSlotsTests {
    actor Gauge {
        private(set) var running = 0
        private(set) var most = 0
        private(set) var finished = 0
        func enter() { running += 1; most = max(most, running) }
        func leave() { running -= 1; finished += 1 }
    }

    @Test func noMoreThanTheSlotsRunAtOnceAndEveryWaiterRuns() async throws {
        let slots = GuestWorkSlots(slots: 2)
        let gauge = Gauge()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<6 {
                group.addTask {
                    try await slots.holding {
                        await gauge.enter()
                        try await Task.sleep(for: .milliseconds(20))
                        await gauge.leave()
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(await gauge.most == 2)
        #expect(await gauge.finished == 6)
    }

    struct Failure: Error {}

    @Test func aFailingHolderGivesItsSlotBack() async throws {
        let slots = GuestWorkSlots(slots: 1)
        await #expect(throws: Failure.self) { try await slots.holding { throw Failure() } }
        let ran = await slots.holding { true }
        #expect(ran)
    }
}
