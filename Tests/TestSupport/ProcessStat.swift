import Foundation

/// The fields of /proc/<pid>/stat the tests look at. The command name is parenthesised and
/// may hold spaces or parentheses, so the fields are read after its last `)`.
public struct ProcessStat: Sendable {
    /// R, S, D, T (stopped), Z (zombie)…
    public var state: Character
    public var parent: pid_t

    /// nil when the process is gone (or its stat cannot be read).
    public init?(_ pid: pid_t) {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 1, let state = fields[0].first, let parent = pid_t(fields[1]) else { return nil }
        self.state = state
        self.parent = parent
    }
}
