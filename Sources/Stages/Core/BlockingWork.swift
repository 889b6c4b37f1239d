import Foundation

/// Runs blocking work (hashing a file, a libguestfs call) on a thread of its own, so it
/// never occupies one of the few threads of Swift's cooperative pool.
public enum BlockingWork {
    /// `label` names the thread for top -H and /proc; the kernel keeps 15 bytes of it.
    public static func run<T: Sendable>(_ label: String = "h2k-blocking",
                                        _ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                // Named from the thread itself: only then does the kernel see the name.
                Thread.current.name = label
                continuation.resume(with: Result { try work() })
            }
            thread.start()
        }
    }
}
