import Foundation
import Synchronization

/// The convert command's progress: a redrawn bar on a terminal, a plain line every 10%
/// otherwise (logs and CI output stay readable), each with the time left at the rate so far.
public final class ProgressLine: Sendable {
    private struct State {
        var lastShown = -1
        /// When the current stage's progress started (it starts again from 0 at each stage).
        var startedAt: ContinuousClock.Instant?
        var lastFraction = 0.0
    }
    private let isTerminal: Bool
    private let state = Mutex(State())

    public init(isTerminal: Bool) {
        self.isTerminal = isTerminal
    }

    public func show(_ fraction: Double) {
        let clamped = min(max(fraction, 0), 1)
        let percent = Int((clamped * 100).rounded(.down))
        let step = isTerminal ? percent : percent / 10 * 10
        let now = ContinuousClock.now
        let (changed, elapsed) = state.withLock { state -> (Bool, Duration) in
            if state.startedAt == nil || clamped < state.lastFraction {
                state.startedAt = now
                state.lastShown = -1
            }
            state.lastFraction = clamped
            let elapsed = now - (state.startedAt ?? now)
            guard step != state.lastShown else { return (false, elapsed) }
            state.lastShown = step
            return (true, elapsed)
        }
        guard changed else { return }
        let left = Self.timeLeft(elapsed: elapsed, fraction: clamped).map { ", about \($0) left" } ?? ""
        if isTerminal {
            let filled = percent * 30 / 100
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: 30 - filled)
            FileHandle.standardError.write(Data("\r[\(bar)] \(percent)%\(left)   ".utf8))
        } else {
            FileHandle.standardError.write(Data("progress: \(step)%\(left)\n".utf8))
        }
    }

    /// "1 min 05 s" at the rate so far; nil until there is a rate worth quoting.
    static func timeLeft(elapsed: Duration, fraction: Double) -> String? {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        guard fraction >= 0.01, fraction < 1, seconds >= 1 else { return nil }
        let left = Int((seconds * (1 - fraction) / fraction).rounded())
        return left >= 60 ? String(format: "%d min %02d s", left / 60, left % 60) : "\(left) s"
    }

    public func finish() {
        if isTerminal && state.withLock({ $0.lastShown }) >= 0 { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
