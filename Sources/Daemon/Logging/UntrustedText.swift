/// Renders text that came from outside (a queue file name, a path, a message quoting one)
/// so that it stays on one line and cannot drive a terminal: anyone who can drop a file
/// chooses its name, and a name with "\n<fake log line>" or an escape sequence must show
/// up as exactly that, visibly, inside the one line that mentions it.
///
/// Escaped: `\n` `\r` `\t` by name; other C0 controls and DEL as `\x1b`, `\x7f`; C1
/// controls, the Unicode line and paragraph separators and the bidirectional overrides
/// (which reorder what a reader sees) as `\u{85}`, `\u{202e}`. Invalid UTF-8 bytes (only
/// `escaped(bytes:)` can see them; a `String` never holds them) become `\xff`.
/// Backslashes are left alone: Windows paths in messages stay readable.
public enum UntrustedText {
    public static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var result = ""
        result.reserveCapacity(text.utf8.count + 8)
        for scalar in text.unicodeScalars {
            append(scalar, to: &result)
        }
        return result
    }

    /// As `escaped(_:)`, for raw bytes such as a directory entry's name.
    public static func escaped<Bytes: Collection>(bytes: Bytes) -> String where Bytes.Element == UInt8 {
        let buffered = Array(bytes)
        var result = ""
        var index = 0
        while index < buffered.count {
            let length = sequenceLength(buffered, at: index)
            if length > 0, let decoded = String(validating: buffered[index..<(index + length)], as: UTF8.self),
               let scalar = decoded.unicodeScalars.first {
                append(scalar, to: &result)
                index += length
            } else {
                result += "\\x" + hex(buffered[index])
                index += 1
            }
        }
        return result
    }

    static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1f, 0x7f, 0x80...0x9f, 0x2028, 0x2029, 0x202a...0x202e, 0x2066...0x2069: true
        default: false
        }
    }

    private static func append(_ scalar: Unicode.Scalar, to result: inout String) {
        guard needsEscape(scalar) else {
            result.unicodeScalars.append(scalar)
            return
        }
        switch scalar.value {
        case 0x0a: result += "\\n"
        case 0x0d: result += "\\r"
        case 0x09: result += "\\t"
        case 0x00...0x1f, 0x7f: result += "\\x" + hex(UInt8(truncatingIfNeeded: scalar.value))
        default: result += "\\u{" + String(scalar.value, radix: 16) + "}"
        }
    }

    private static func hex(_ byte: UInt8) -> String {
        let digits = String(byte, radix: 16)
        return digits.count == 1 ? "0" + digits : digits
    }

    /// Length of the UTF-8 sequence a lead byte announces (0: not a lead byte, or the input ends first).
    private static func sequenceLength(_ bytes: [UInt8], at index: Int) -> Int {
        let lead = bytes[index]
        let length = switch lead {
        case 0x00...0x7f: 1
        case 0xc2...0xdf: 2
        case 0xe0...0xef: 3
        case 0xf0...0xf4: 4
        default: 0
        }
        return index + length <= bytes.count ? length : 0
    }
}
