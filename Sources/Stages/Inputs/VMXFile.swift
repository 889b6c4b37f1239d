import Foundation

/// A VMware `.vmx` configuration read as untrusted text: `key = "value"` lines, nothing more.
///
/// What VMware writes (Workstation, Fusion, ESXi): one `key = "value"` per line, `#` comments,
/// an optional `#!/usr/bin/vmware` first line and `.encoding = "UTF-8"`; old files leave simple
/// values unquoted (`config.version = 4`). Inside quotes VMware writes a `"` or a `|` as `|22`
/// and `|7C` (any byte as `|` and two hex digits), which are decoded here.
///
/// Refused, each naming the file and the line: more than `maximumBytes` or `maximumEntries`,
/// text that is not UTF-8 (whatever `.encoding` says: a name we cannot read as written cannot be
/// checked as VMware would open it), a NUL or other control character, a line that is not an
/// assignment, an unterminated quote, and one key given two different values (which one a
/// product takes is not written down; we do not guess). Keys are compared case-insensitively,
/// as VMware does (`memsize`, `memSize`).
public struct VMXFile: Sendable, Equatable {
    /// Lower-cased key → decoded value.
    public private(set) var values: [String: String] = [:]
    /// Lower-cased key → the key as written, for messages.
    private var spelling: [String: String] = [:]

    /// Real `.vmx` files are a few kilobytes; this is far above any.
    public static let maximumBytes = 1 << 20
    public static let maximumEntries = 20_000
    static let maximumKeyBytes = 256

    public subscript(key: String) -> String? { values[key.lowercased()] }

    /// The keys present, lower-cased.
    public var keys: Dictionary<String, String>.Keys { values.keys }

    /// The key as the file spells it.
    public func written(_ key: String) -> String { spelling[key.lowercased()] ?? key }

    public static func parse(_ bytes: [UInt8], file: String) throws -> VMXFile {
        guard bytes.count <= maximumBytes else {
            throw StageError(.badInput, file: file, "a .vmx of \(bytes.count) bytes is implausibly large (at most \(maximumBytes))")
        }
        var body = bytes[...]
        if body.starts(with: [0xef, 0xbb, 0xbf]) { body = body.dropFirst(3) }
        guard let text = String(validating: body, as: UTF8.self) else {
            throw StageError(.badInput, file: file, "the .vmx is not UTF-8 text (a .vmx written in another encoding must be re-saved as UTF-8)")
        }
        var vmx = VMXFile()
        var lineOfKey: [String: Int] = [:]
        for (index, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            let number = index + 1
            // "\r\n" is one Character in Swift: split on it as on "\n"; a lone "\r" is a control character.
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard !line.unicodeScalars.contains(where: { $0.value < 0x20 && $0 != "\t" || $0.value == 0x7f }) else {
                throw StageError(.badInput, file: file, "line \(number) holds a control character")
            }
            let (key, value) = try assignment(line, number: number, file: file)
            let folded = key.lowercased()
            if let earlier = vmx.values[folded] {
                guard earlier == value else {
                    throw StageError(.badInput, file: file,
                                     "key \(key.debugDescription) is given twice with different values (lines \(lineOfKey[folded] ?? 0) and \(number)): which one VMware takes is not defined")
                }
                continue
            }
            guard vmx.values.count < maximumEntries else {
                throw StageError(.badInput, file: file, "more than \(maximumEntries) entries: not a VM configuration")
            }
            vmx.values[folded] = value
            vmx.spelling[folded] = key
            lineOfKey[folded] = number
        }
        return vmx
    }

    /// `key = "value"` or `key = value` → (key, decoded value).
    private static func assignment(_ line: String, number: Int, file: String) throws -> (String, String) {
        guard let equals = line.firstIndex(of: "=") else {
            throw StageError(.badInput, file: file, "line \(number) is not a 'key = value' assignment")
        }
        let key = line[..<equals].trimmingCharacters(in: .whitespaces)
        guard !key.isEmpty, key.utf8.count <= maximumKeyBytes,
              key.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "._:-[]".unicodeScalars.contains($0)) })
        else {
            throw StageError(.badInput, file: file, "line \(number) has a malformed key \(String(key.prefix(80)).debugDescription)")
        }
        let rest = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        guard rest.hasPrefix("\"") else {
            // Old files leave simple values unquoted; a bare value ends at the first blank or comment.
            let bare = rest.prefix { $0 != "#" }.trimmingCharacters(in: .whitespaces)
            guard !bare.contains("\"") else {
                throw StageError(.badInput, file: file, "line \(number): a value with a quote inside must be quoted")
            }
            return (key, bare)
        }
        let inner = rest.dropFirst()
        guard let close = inner.firstIndex(of: "\"") else {
            throw StageError(.badInput, file: file, "line \(number): the value of \(key.debugDescription) has no closing quote")
        }
        let after = inner[inner.index(after: close)...].trimmingCharacters(in: .whitespaces)
        guard after.isEmpty || after.hasPrefix("#") else {
            throw StageError(.badInput, file: file, "line \(number): text after the closing quote of \(key.debugDescription)")
        }
        return (key, try decodeEscapes(String(inner[..<close]), key: key, number: number, file: file))
    }

    /// `|22` → `"`: VMware's escape for a byte inside a quoted value. The decoded bytes must be UTF-8.
    private static func decodeEscapes(_ value: String, key: String, number: Int, file: String) throws -> String {
        guard value.contains("|") else { return value }
        var bytes: [UInt8] = []
        var utf8 = value.utf8[...]
        while let byte = utf8.first {
            utf8 = utf8.dropFirst()
            guard byte == UInt8(ascii: "|"), utf8.count >= 2,
                  utf8.prefix(2).allSatisfy({ (0x30...0x39).contains($0) || (0x41...0x46).contains($0) || (0x61...0x66).contains($0) }),
                  let decoded = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16) else {
                bytes.append(byte)
                continue
            }
            bytes.append(decoded)
            utf8 = utf8.dropFirst(2)
        }
        guard let text = String(validating: bytes, as: UTF8.self),
              !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
            throw StageError(.badInput, file: file, "line \(number): the value of \(key.debugDescription) decodes to a control character or to bytes that are not UTF-8")
        }
        return text
    }
}
