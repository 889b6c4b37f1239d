import Foundation
import TestSupport

/// A receiver started by a test from Tests/Fixtures: the webhook receiver or the SMTP sink,
/// both Python 3 on 127.0.0.1. Each keeps one JSON line per request in `log`, flags copies
/// of a key it saw before (`duplicate`), and remembers keys across its own restarts.
final class FixtureServer: @unchecked Sendable {
    enum Kind: String {
        case webhook = "notification-receiver.py"
        case smtp = "smtp-sink.py"
    }

    let kind: Kind
    let log: String
    private let portFile: String
    private let extra: [String]
    private var process: Process?
    private(set) var port = 0

    init(_ kind: Kind, scratch: Scratch, extra: [String] = []) {
        self.kind = kind
        log = scratch.path("\(kind).log")
        portFile = scratch.path("\(kind).port")
        self.extra = extra
    }

    /// Starts it on `port` (0: any free port the first time; the same port again after a stop).
    func start(extra more: [String] = []) async throws {
        try? FileManager.default.removeItem(atPath: portFile)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        let script = Repository.root.appendingPathComponent("Tests/Fixtures/" + kind.rawValue).path
        process.arguments = [script, "--port", "\(port)", "--port-file", portFile, "--log", log] + extra + more
        try process.run()
        self.process = process
        guard await waitUntil(30, { FileManager.default.fileExists(atPath: portFile) }),
              let text = try? String(contentsOfFile: portFile, encoding: .utf8), let bound = Int(text)
        else { throw FixtureError("\(kind.rawValue) did not start") }
        port = bound
    }

    /// Kills it; its port stays reserved for the next `start`.
    func stop() async {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        _ = await waitUntil(10) { !process.isRunning }
        self.process = nil
    }

    var entries: [[String: Any]] {
        guard let text = try? String(contentsOfFile: log, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// The idempotency keys received, first copies only.
    var keys: [String] { entries.filter { $0["duplicate"] as? Bool == false }.compactMap { $0["key"] as? String } }
    var duplicates: Int { entries.filter { $0["duplicate"] as? Bool == true }.count }

    deinit {
        if let process, process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}
