import Foundation

/// A directory under the system temp dir owned by one test, removed when the value dies
/// (or earlier, by `remove()`).
///
/// The one temp-directory helper of every test target: `url`/`file(_:)` for URL-based
/// code, `path`/`path(_:)` for path-based code.
public final class Scratch: Sendable {
    public let url: URL

    /// `label` names the directory (`h2k-<label>-<random>`) so a leftover one says which
    /// test made it; the test's function name unless given.
    public init(_ label: String = #function) throws {
        let safe = label.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("h2k-\(safe.prefix(40))-\(UUID().uuidString.prefix(8))", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { remove() }

    /// The directory itself, as a path.
    public var path: String { url.path }

    /// A path below the directory (not created).
    public func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    /// A URL below the directory (not created).
    public func file(_ name: String) -> URL { url.appendingPathComponent(name) }

    /// Creates (if needed) and returns a subdirectory.
    public func subdirectory(_ name: String) throws -> URL {
        let sub = url.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: sub, withIntermediateDirectories: true)
        return sub
    }

    /// Writes `contents` to `name` below the directory; returns its path.
    @discardableResult
    public func write(_ name: String, _ contents: String = "data") throws -> String {
        try Data(contents.utf8).write(to: file(name))
        return path(name)
    }

    public func exists(_ relativePath: String) -> Bool {
        FileManager.default.fileExists(atPath: path(relativePath))
    }

    /// Every path below the directory, relative, sorted (to prove nothing else was written).
    public func listing() -> [String] {
        let base = url.resolvingSymlinksInPath().path
        guard let walker = FileManager.default.enumerator(atPath: base) else { return [] }
        return walker.compactMap { $0 as? String }.sorted()
    }

    /// Removes the directory now (tests whose directory must be gone before they end).
    public func remove() {
        try? FileManager.default.removeItem(at: url)
    }
}
