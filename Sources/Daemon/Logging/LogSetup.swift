import Foundation
import Logging
import Synchronization
import SystemSupport

/// Configures swift-log once per process: stderr always, plus `log_file` when set.
public enum LogSetup {
    public static func makeLogger(verbose: Int, logFile: String?, label: String = "hyper2kvm") -> Logger {
        let level: Logger.Level = switch verbose {
        case ...0: .warning
        case 1: .info
        case 2: .debug
        default: .trace
        }
        let file = logFile.flatMap { FileLogSink(path: $0) }
        var logger = Logger(label: label) { label in
            var handlers: [any LogHandler] = [StreamLogHandler.standardError(label: label)]
            if let file { handlers.append(FileLogHandler(sink: file)) }
            return EscapingLogHandler(inner: MultiplexLogHandler(handlers))
        }
        logger.logLevel = level
        return logger
    }
}

/// An append-only log file shared by every logger of the process.
final class FileLogSink: Sendable {
    private let handle: Mutex<FileHandle>

    init?(path: String) {
        let url = URL(fileURLWithPath: path)
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: path) {
            // A file that cannot be created fails the open below, which says so.
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        guard let handle = FileHandle(forWritingAtPath: path) else { return nil }
        handle.seekToEndOfFile()
        self.handle = Mutex(handle)
    }

    func write(_ line: String) {
        handle.withLock { $0.write(Data(line.utf8)) }
    }
}

struct FileLogHandler: LogHandler {
    let sink: FileLogSink
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let stamp = Timestamp.now()
        sink.write("\(stamp) \(event.level) \(event.message)\(fields.isEmpty ? "" : " " + fields)\n")
    }
}

/// Passes every event on with its message and metadata values through
/// `UntrustedText.escaped`: messages quote queue file names and paths, which whoever drops
/// a file chooses, so one event stays one line with no terminal control in it.
struct EscapingLogHandler: LogHandler {
    var inner: any LogHandler

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        var escaped = event
        escaped.message = "\(UntrustedText.escaped(event.message.description))"
        escaped.metadata = event.metadata?.mapValues(Self.escaped)
        inner.log(event: escaped)
    }

    static func escaped(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
        switch value {
        case .string(let text): .string(UntrustedText.escaped(text))
        case .stringConvertible(let convertible): .string(UntrustedText.escaped(convertible.description))
        case .array(let values): .array(values.map(escaped))
        case .dictionary(let values): .dictionary(values.mapValues(escaped))
        }
    }
}
