import Foundation

/// The product's `daemon` command running as a child of the test, its stdout and stderr in
/// `log`: what the daemon tests start, each adding how it stops it.
open class DaemonProcess: @unchecked Sendable {
    public let process = Process()
    public let log: URL

    /// `configs` in order on the command line (later files win); `environment` on top of ours.
    public init(base: String, configs: [String], log: URL, environment: [String: String] = [:]) throws {
        self.log = log
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: ProductBinary.path)
        process.arguments = ["daemon", "--base-dir", base] + configs.flatMap { ["--config", $0] }
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    /// What the daemon logged so far.
    public var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
}
