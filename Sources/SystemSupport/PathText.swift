/// Path arithmetic on plain strings, byte-exact (no normalisation, unlike `URL`), for names
/// that come from a directory listing and must be used as they are.
public enum PathText {
    /// The directory part: "." for a bare name, "/" for a name in the root.
    public static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    public static func lastComponent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// The longest prefix of `text` that is at most `bytes` UTF-8 bytes and ends on a
    /// character boundary (to fit a name within NAME_MAX).
    public static func prefix(of text: String, fittingBytes bytes: Int) -> String {
        var result = ""
        var used = 0
        for character in text {
            let size = character.utf8.count
            guard used + size <= bytes else { break }
            result.append(character)
            used += size
        }
        return result
    }
}
