import Foundation
import Stages

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
        DurableFiles.parent(of: archivedPath) + "/" + reportName(for: DurableFiles.lastComponent(of: archivedPath))
    }

    public static let suffix = ".error.json"
    /// NAME_MAX on Linux filesystems, in bytes.
    public static let maximumNameBytes = 255

    /// `<name>.error.json`, or, when that exceeds NAME_MAX (a 245-byte name already does),
    /// the longest prefix of the name that fits with `~<16 hex digits of the name's SHA-256>`
    /// before the suffix: still sorted beside its source, unique per name, and the report's
    /// `filename` field holds the whole name.
    public static func reportName(for name: String) -> String {
        guard name.utf8.count + suffix.utf8.count > maximumNameBytes else { return name + suffix }
        let digest = String(sha256Hex(name).prefix(16))
        let budget = maximumNameBytes - suffix.utf8.count - 1 - digest.utf8.count
        return DurableFiles.prefix(of: name, fittingBytes: budget) + "~" + digest + suffix
    }

    static func sha256Hex(_ text: String) -> String {
        guard let context = try? SHA256Context() else {
            // OpenSSL unavailable: FNV-1a still tells names apart.
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
            let digits = String(hash, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }
        context.update(Data(text.utf8))
        return context.finalize()
    }

    /// Writes `report` as `.errors/<name>.error.json` (temporary file, fsync, rename, fsync of
    /// the directory), creating `.errors/` if needed, and returns its path. An older report
    /// of the same name is replaced whole.
    @discardableResult
    public func write(_ report: ErrorReport, name: String) throws -> String {
        try DurableFiles.ensureDirectory(errorsDirectory)
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
        try DurableFiles.writeAtomically(bytes, to: path)
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
