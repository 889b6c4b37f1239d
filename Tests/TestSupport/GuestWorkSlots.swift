import Testing

/// At most two heavy guest suites (a real guest's conversion under a TCG libguestfs appliance,
/// a TCG boot) run at once in the test process. Swift Testing starts every suite together; on
/// a 2-core host ten TCG appliances then share two cores, each stage takes ten times longer,
/// and waits sized for one appliance time out (a full run here: a 9-second boot check took
/// 1,718 s). Two slots keep both cores busy with guest work while the light suites fill gaps.
public actor GuestWorkSlots {
    public static let shared = GuestWorkSlots(slots: 2)

    private var free: Int
    private var waiting: [CheckedContinuation<Void, Never>] = []

    public init(slots: Int) { free = max(1, slots) }

    public func acquire() async {
        if free > 0 {
            free -= 1
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    /// Hands the slot to the longest waiter, or frees it.
    public func release() {
        if waiting.isEmpty {
            free += 1
        } else {
            waiting.removeFirst().resume()
        }
    }

    /// Runs `work` holding a slot.
    public func holding<T: Sendable>(_ work: @Sendable () async throws -> T) async rethrows -> T {
        await acquire()
        do {
            let result = try await work()
            release()
            return result
        } catch {
            release()
            throw error
        }
    }
}

/// `.guestWorkSlot` on a suite (or a test): its whole run holds one of GuestWorkSlots' slots.
/// The time a suite waits for a slot is not part of its run, so its own time limits hold.
public struct GuestWorkSlotTrait: SuiteTrait, TestTrait, TestScoping {
    public func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
        // Once for the suite or function it is on, never again per test case.
        testCase == nil ? self : nil
    }

    public func provideScope(for test: Test, testCase: Test.Case?,
                             performing function: @Sendable () async throws -> Void) async throws {
        try await GuestWorkSlots.shared.holding(function)
    }
}

extension Trait where Self == GuestWorkSlotTrait {
    public static var guestWorkSlot: Self { GuestWorkSlotTrait() }
}
