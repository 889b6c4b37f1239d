import Foundation

/// Polls `condition` every 0.2 s until it holds or `seconds` have passed, and returns its last
/// answer: for tests that wait on a daemon running in another process.
public func waitUntil(_ seconds: Double, _ condition: () throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        try? await Task.sleep(for: .seconds(0.2))
    }
    return try condition()
}
