import CCrashRecord
import Foundation
import Glibc
import Journal
import SystemSupport

/// What the daemon's fatal-signal handler left behind: the daemon run that died, the signal
/// and when. SIGKILL and power loss leave no record, so its presence tells a crash of the
/// daemon itself (a trap, a bad access: possibly caused by the file it was converting) from
/// an external kill, which must cost nothing but time.
public struct CrashRecord: Sendable, Equatable {
    public var run: Int64
    public var signal: Int32
    public var time: Date

    public init(run: Int64, signal: Int32, time: Date) {
        self.run = run
        self.signal = signal
        self.time = time
    }

    /// Parses the handler's line, `run=<id> signal=<n> time=<unix seconds>`; nil for anything else
    /// (an empty file: the run armed the recorder and did not crash).
    public static func parse(_ text: String) -> CrashRecord? {
        var fields: [String: Int64] = [:]
        for pair in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let value = Int64(parts[1]) else { return nil }
            fields[String(parts[0])] = value
        }
        guard let run = fields["run"], let number = fields["signal"], let seconds = fields["time"],
              let signal = Int32(exactly: number) else { return nil }
        return CrashRecord(run: run, signal: signal, time: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }

    /// "SIGILL" for 4; the number for signals the handler does not catch.
    public var signalName: String {
        let names: [Int32: String] = [SIGILL: "SIGILL", SIGTRAP: "SIGTRAP", SIGSEGV: "SIGSEGV",
                                      SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGABRT: "SIGABRT"]
        return names[signal] ?? "signal \(signal)"
    }
}

/// The crash record's file in `state_dir`, and the handler that writes it.
public struct CrashRecordFile: Sendable {
    public static let fileName = "crash-record"
    public let path: String

    public init(stateDirectory: String) {
        path = stateDirectory + "/" + Self.fileName
    }

    /// The record left by `previousRun` (the journal's latest run before this start), or nil:
    /// no file, an empty one, or one from another run (never applied twice).
    public func read(previousRun: Int64?) -> CrashRecord? {
        guard let previousRun, let data = FileManager.default.contents(atPath: path),
              let record = CrashRecord.parse(String(decoding: data, as: UTF8.self)) else { return nil }
        return record.run == previousRun ? record : nil
    }

    /// Empties the record durably and installs the fatal-signal handlers for `run`. The
    /// descriptor is opened now because a handler may not open files safely; it stays open
    /// for the life of the process.
    ///
    /// Emptied before the previous record is journaled: losing it to a power cut in between
    /// only turns a crash into a plain resume, the safe side.
    public func arm(run: Int64) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else {
            throw CrashRecordError.cannot("open", path: path, errno: errno)
        }
        guard SystemCall.retryingOnInterrupt({ fsync(descriptor) }) == 0 else {
            let code = errno
            close(descriptor)
            throw CrashRecordError.cannot("fsync", path: path, errno: code)
        }
        guard h2k_crash_record_arm(descriptor, run) == 0 else {
            let code = errno
            close(descriptor)
            throw CrashRecordError.cannot("install the fatal-signal handlers for", path: path, errno: code)
        }
    }
}

enum CrashRecordError: Error, CustomStringConvertible {
    case cannot(String, path: String, errno: Int32)

    var description: String {
        switch self {
        case let .cannot(operation, path, code):
            "cannot \(operation) the crash record \(path): \(String(cString: strerror(code)))"
        }
    }
}
