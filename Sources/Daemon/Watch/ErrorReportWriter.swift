import Foundation
import SystemSupport

/// Writes `ErrorReport`s durably as `<watch_dir>/.errors/<name>.error.json`.
public struct ErrorReportWriter: Sendable {
    public let watchDirectory: String

    public init(watchDirectory: String) {
        self.watchDirectory = watchDirectory
    }

    public var errorsDirectory: String { watchDirectory + "/" + QueueEntryFilter.errorsDirectoryName }

    /// Where the report for the source archived as `archivedPath` goes: beside it, named
    /// `<archived name>.error.json` (so a source renamed on collision keeps its own report),
    /// or a shortened name when that would not fit (`reportName(for:)`).
    public static func reportPath(forArchivedSource archivedPath: String) -> String {
        PathText.parent(of: archivedPath) + "/" + reportName(for: PathText.lastComponent(of: archivedPath))
    }

    public static let suffix = ".error.json"

    /// `<name>.error.json`, or a shortened name when that exceeds NAME_MAX (a 245-byte name
    /// already does): see `QueueFileName.companionName`. The report's `filename` holds the whole name.
    public static func reportName(for name: String) -> String {
        QueueFileName.companionName(of: name, suffix: suffix)
    }

    /// Writes `report` as `.errors/<name>.error.json` (temporary file, fsync, rename, fsync of
    /// the directory), creating `.errors/` if needed, and returns its path. An older report
    /// of the same name is replaced whole.
    @discardableResult
    public func write(_ report: ErrorReport, name: String) throws -> String {
        try Directory.ensure(errorsDirectory)
        return try write(report, toPath: errorsDirectory + "/" + Self.reportName(for: name))
    }

    /// Writes `report` beside a source that `SourceArchiver` moved to `archivedPath`.
    @discardableResult
    public func write(_ report: ErrorReport, forArchivedSource archivedPath: String) throws -> String {
        try write(report, toPath: Self.reportPath(forArchivedSource: archivedPath))
    }

    private func write(_ report: ErrorReport, toPath path: String) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var bytes = Array(Self.escapingInvisibleControls(String(decoding: try encoder.encode(report), as: UTF8.self)).utf8)
        bytes.append(UInt8(ascii: "\n"))
        try DurableWrite.replace(path, with: bytes)
        return path
    }

    /// JSON may carry DEL, C1 controls and the line separators raw, and a terminal showing
    /// the report would act on them; as `\uXXXX` escapes the value read back is the same.
    /// (The encoder already escapes C0 controls.) They can only occur inside strings, so the
    /// document stays valid.
    static func escapingInvisibleControls(_ json: String) -> String {
        // Not C0: those outside strings are the document's own line breaks and indentation.
        let escape = { (scalar: Unicode.Scalar) in scalar.value >= 0x7f && UntrustedText.needsEscape(scalar) }
        guard json.unicodeScalars.contains(where: escape) else { return json }
        var result = ""
        for scalar in json.unicodeScalars {
            if escape(scalar) {
                let digits = String(scalar.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: max(0, 4 - digits.count)) + digits
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}
