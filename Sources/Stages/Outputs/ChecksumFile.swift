import Foundation

/// A `SHA256SUMS` file in the format `sha256sum -c` reads: one `<hex>  <name>` line per file
/// (two spaces: text mode), names relative to the directory the file sits in, sorted by
/// name so the same outputs always give the same bytes.
public struct ChecksumFile: Sendable, Equatable {
    public static let fileName = "SHA256SUMS"

    public struct Entry: Sendable, Equatable {
        public var name: String
        /// Lowercase hex SHA-256; a `sha256:` prefix is accepted and dropped.
        public var sha256: String
        public init(name: String, sha256: String) {
            self.name = name
            self.sha256 = sha256
        }
    }

    public private(set) var entries: [Entry]

    /// - Throws: `StageError(.badInput)` for a name `sha256sum -c` would misread (a path, a
    ///   newline or backslash, which it escapes) or a digest that is not 64 hex digits, and
    ///   for a name listed twice.
    public init(entries: [Entry]) throws {
        var normalized: [Entry] = []
        for entry in entries {
            let name = entry.name
            guard !name.isEmpty, name != ".", name != "..",
                  !name.contains("/"), !name.contains("\n"), !name.contains("\r"), !name.contains("\\") else {
                throw StageError(.badInput, file: name, "cannot be listed in \(Self.fileName): not a plain file name")
            }
            var hex = entry.sha256.lowercased()
            if hex.hasPrefix("sha256:") { hex.removeFirst("sha256:".count) }
            guard hex.utf8.count == 64, hex.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
                throw StageError(.badInput, file: name, "'\(entry.sha256)' is not a SHA-256 digest")
            }
            normalized.append(Entry(name: name, sha256: hex))
        }
        // Byte order, not locale order: the file must not depend on the environment.
        normalized.sort { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
        for (earlier, later) in zip(normalized, normalized.dropFirst()) where earlier.name == later.name {
            throw StageError(.badInput, file: later.name, "listed twice in \(Self.fileName)")
        }
        self.entries = normalized
    }

    public func rendered() -> String {
        entries.map { "\($0.sha256)  \($0.name)\n" }.joined()
    }

    /// Writes the file (named ``fileName`` by convention) and fsyncs it.
    public func write(to url: URL) throws {
        try DurableFile.write(Data(rendered().utf8), to: url)
    }
}
