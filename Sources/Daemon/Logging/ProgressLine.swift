import Foundation
import Synchronization

/// The convert command's progress: a redrawn bar on a terminal, a plain line every 10%
/// otherwise (logs and CI output stay readable).
public final class ProgressLine: Sendable {
    private let isTerminal: Bool
    private let lastShown = Mutex<Int>(-1)

    public init(isTerminal: Bool) {
        self.isTerminal = isTerminal
    }

    public func show(_ fraction: Double) {
        let percent = Int((min(max(fraction, 0), 1) * 100).rounded(.down))
        let step = isTerminal ? percent : percent / 10 * 10
        let changed = lastShown.withLock { last -> Bool in
            guard step != last else { return false }
            last = step
            return true
        }
        guard changed else { return }
        if isTerminal {
            let filled = percent * 30 / 100
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: 30 - filled)
            FileHandle.standardError.write(Data("\r[\(bar)] \(percent)%".utf8))
        } else {
            FileHandle.standardError.write(Data("progress: \(step)%\n".utf8))
        }
    }

    public func finish() {
        if isTerminal && lastShown.withLock({ $0 }) >= 0 { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
