import Foundation

/// Writes `ErrorReport`s durably as `<watch_dir>/.errors/<name>.error.json`.
public struct ErrorReportWriter: Sendable {
    public let watchDirectory: String

    public init(watchDirectory: String) {
        self.watchDirectory = watchDirectory
    }

    public var errorsDirectory: String { watchDirectory + "/" + QueueEntryFilter.errorsDirectoryName }

    /// Where the report for the source archived as `archivedPath` goes: beside it, named
    /// `<archived name>.error.json` (so a source renamed on collision keeps its own report).
    public static func reportPath(forArchivedSource archivedPath: String) -> String {
        archivedPath + ".error.json"
    }

    /// Writes `report` as `.errors/<name>.error.json` (temporary file, fsync, rename, fsync of
    /// the directory), creating `.errors/` if needed, and returns its path. An older report
    /// of the same name is replaced whole.
    @discardableResult
    public func write(_ report: ErrorReport, name: String) throws -> String {
        try DurableFiles.ensureDirectory(errorsDirectory)
        return try write(report, toPath: errorsDirectory + "/" + name + ".error.json")
    }

    /// Writes `report` beside a source that `SourceArchiver` moved to `archivedPath`.
    @discardableResult
    public func write(_ report: ErrorReport, forArchivedSource archivedPath: String) throws -> String {
        try write(report, toPath: Self.reportPath(forArchivedSource: archivedPath))
    }

    private func write(_ report: ErrorReport, toPath path: String) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var bytes = [UInt8](try encoder.encode(report))
        bytes.append(UInt8(ascii: "\n"))
        try DurableFiles.writeAtomically(bytes, to: path)
        return path
    }
}
