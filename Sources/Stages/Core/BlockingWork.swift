import Foundation

/// Runs blocking work (hashing a file, a libguestfs call) on a thread of its own, so it
/// never occupies one of the few threads of Swift's cooperative pool.
public enum BlockingWork {
    public static func run<T: Sendable>(_ label: String = "hyper2kvm.blocking",
                                        _ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try work() })
            }
            thread.name = label
            thread.start()
        }
    }
}
