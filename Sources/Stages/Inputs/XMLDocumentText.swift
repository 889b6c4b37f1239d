import Foundation

/// An XML document's bytes decoded to text the way an XML processor decides their encoding
/// (byte order mark; else the `<?xml` byte pattern of XML 1.0 Appendix F; then the
/// `encoding=` declaration), so that checks on the text see the document the parser sees.
/// Anything not decodable, or in an encoding we do not read, is refused.
public struct XMLDocumentText: Sendable, Equatable {
    public enum Encoding: String, Sendable, Equatable {
        case utf8 = "UTF-8"
        case utf16LE = "UTF-16LE", utf16BE = "UTF-16BE"
        case utf32LE = "UTF-32LE", utf32BE = "UTF-32BE"
        case isoLatin1 = "ISO-8859-1"
        case ascii = "US-ASCII"

        var unitBytes: Int {
            switch self {
            case .utf16LE, .utf16BE: 2
            case .utf32LE, .utf32BE: 4
            default: 1
            }
        }
    }

    /// What went wrong, as a sentence the caller prefixes with the file.
    public struct Refusal: Error, Sendable, Equatable {
        public let reason: String
    }

    public let text: String
    public let encoding: Encoding

    /// The same document as UTF-8 bytes with no byte order mark, its XML declaration (if any)
    /// saying `encoding="UTF-8"`: what a parser that trusts bytes must be handed.
    public var utf8Document: Data {
        Data(Self.declaringUTF8(text).utf8)
    }

    public init(decoding data: Data) throws(Refusal) {
        let bytes = [UInt8](data)
        let (family, bomLength) = Self.detectFamily(bytes)
        let body = bytes.dropFirst(bomLength)
        // The declaration is ASCII in every supported encoding, so the family is enough to read
        // it; one-byte families are read as ISO-8859-1, which cannot fail on what follows it.
        let headEncoding: Encoding = family.unitBytes == 1 ? .isoLatin1 : family
        let declared = Self.declaredEncoding(in: try Self.decode(body.prefix(512 * family.unitBytes), as: headEncoding, partial: true))
        let encoding = try Self.reconcile(family: family, hasBOM: bomLength > 0, declared: declared)
        let text = try Self.decode(body, as: encoding, partial: false)
        if text.unicodeScalars.contains(where: { $0.value == 0 }) {
            throw Refusal(reason: "contains NUL characters, which XML does not allow (UTF-16 or UTF-32 without a byte order mark or <?xml declaration?)")
        }
        self.text = text
        self.encoding = encoding
    }

    /// The first bytes of a file decoded as far as they go, in the encoding its BOM or
    /// `<?xml` pattern announces (a character cut at the end is dropped); nil when they do
    /// not decode. For sniffing only (is this an XML document, and which root?): the whole
    /// document is judged by `init(decoding:)`.
    public static func decodedHead(_ head: [UInt8]) -> String? {
        let (family, bomLength) = detectFamily(head)
        var body = head.dropFirst(bomLength)
        // Cut to whole code units; a UTF-8 tail is trimmed by the partial decode.
        body = body.prefix(body.count - body.count % family.unitBytes)
        guard let text = try? decode(body, as: family, partial: true),
              !text.unicodeScalars.contains(where: { $0.value == 0 }) else { return nil }
        return text
    }

    // MARK: - Detection (XML 1.0 Appendix F)

    static func detectFamily(_ bytes: [UInt8]) -> (Encoding, bomLength: Int) {
        func starts(_ prefix: [UInt8]) -> Bool { bytes.starts(with: prefix) }
        if starts([0x00, 0x00, 0xfe, 0xff]) { return (.utf32BE, 4) }
        if starts([0xff, 0xfe, 0x00, 0x00]) { return (.utf32LE, 4) }
        if starts([0xfe, 0xff]) { return (.utf16BE, 2) }
        if starts([0xff, 0xfe]) { return (.utf16LE, 2) }
        if starts([0xef, 0xbb, 0xbf]) { return (.utf8, 3) }
        if starts([0x00, 0x00, 0x00, 0x3c]) { return (.utf32BE, 0) }
        if starts([0x3c, 0x00, 0x00, 0x00]) { return (.utf32LE, 0) }
        if starts([0x00, 0x3c, 0x00, 0x3f]) { return (.utf16BE, 0) }
        if starts([0x3c, 0x00, 0x3f, 0x00]) { return (.utf16LE, 0) }
        // Anything else is read as UTF-8 (EBCDIC and unusual octet orders then fail to decode or hold NULs).
        return (.utf8, 0)
    }

    /// The `encoding` pseudo-attribute of a leading `<?xml … ?>`, upper-cased; nil without one.
    static func declaredEncoding(in head: String) -> String? {
        guard hasDeclaration(head), let end = head.range(of: "?>") else { return nil }
        let declaration = head[..<end.lowerBound]
        guard let key = declaration.range(of: "encoding") else { return nil }
        var rest = declaration[key.upperBound...].drop { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard rest.first == "=" else { return nil }
        rest = rest.dropFirst().drop { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard let quote = rest.first, quote == "\"" || quote == "'" else { return nil }
        return String(rest.dropFirst().prefix { $0 != quote }).uppercased()
    }

    static func reconcile(family: Encoding, hasBOM: Bool, declared: String?) throws(Refusal) -> Encoding {
        guard let declared else { return family }
        let names: [String: Encoding] = [
            "UTF-8": .utf8, "UTF8": .utf8,
            "UTF-16LE": .utf16LE, "UTF-16BE": .utf16BE, "UTF-32LE": .utf32LE, "UTF-32BE": .utf32BE,
            "ISO-8859-1": .isoLatin1, "LATIN1": .isoLatin1, "ISO_8859-1": .isoLatin1,
            "US-ASCII": .ascii, "ASCII": .ascii,
        ]
        let chosen: Encoding
        if declared == "UTF-16" || declared == "UCS-2", family == .utf16LE || family == .utf16BE {
            chosen = family
        } else if declared == "UTF-32" || declared == "UCS-4", family == .utf32LE || family == .utf32BE {
            chosen = family
        } else if let known = names[declared] {
            chosen = known
        } else {
            throw Refusal(reason: "declares encoding \"\(declared)\", which is not supported (UTF-8, UTF-16, UTF-32, ISO-8859-1 and US-ASCII are)")
        }
        // A one-byte encoding must be what the bytes look like, and a wide one must match its BOM or pattern.
        let compatible = chosen == family || (family == .utf8 && !hasBOM && chosen.unitBytes == 1)
        guard compatible else {
            throw Refusal(reason: "declares encoding \"\(declared)\", but its bytes are \(family.rawValue)\(hasBOM ? " (byte order mark)" : "")")
        }
        return chosen
    }

    // MARK: - Decoding

    /// Strict: invalid sequences are refused, never replaced. `partial`: the bytes may end in
    /// the middle of a character (the head read for the declaration); the tail is dropped.
    static func decode(_ bytes: ArraySlice<UInt8>, as encoding: Encoding, partial: Bool) throws(Refusal) -> String {
        let refusal = Refusal(reason: "is not valid \(encoding.rawValue)")
        switch encoding {
        case .utf8, .ascii:
            if encoding == .ascii, bytes.contains(where: { $0 >= 0x80 }) { throw refusal }
            var slice = bytes
            if partial {
                // Up to three bytes of a cut character; the declaration never needs them.
                while let last = slice.last, last >= 0x80 { slice = slice.dropLast() }
            }
            guard let text = String(validating: slice, as: UTF8.self) else { throw refusal }
            return text
        case .isoLatin1:
            return String(String.UnicodeScalarView(bytes.map { Unicode.Scalar($0) }))
        case .utf16LE, .utf16BE:
            var units: [UInt16] = []
            units.reserveCapacity(bytes.count / 2)
            var index = bytes.startIndex
            while index + 1 < bytes.endIndex {
                let first = UInt16(bytes[index]), second = UInt16(bytes[index + 1])
                units.append(encoding == .utf16LE ? first | second << 8 : first << 8 | second)
                index += 2
            }
            if partial {
                if let last = units.last, UTF16.isLeadSurrogate(last) { units.removeLast() }
            } else if bytes.count % 2 != 0 {
                throw refusal
            }
            guard let text = String(validating: units, as: UTF16.self) else { throw refusal }
            return text
        case .utf32LE, .utf32BE:
            var units: [UInt32] = []
            units.reserveCapacity(bytes.count / 4)
            var index = bytes.startIndex
            while index + 3 < bytes.endIndex {
                let b = (0..<4).map { UInt32(bytes[index + $0]) }
                units.append(encoding == .utf32LE ? b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24
                                                  : b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3])
                index += 4
            }
            if !partial, bytes.count % 4 != 0 { throw refusal }
            guard let text = String(validating: units, as: UTF32.self) else { throw refusal }
            return text
        }
    }

    /// `text` with the encoding of its XML declaration replaced by UTF-8 (added after
    /// `version` when absent, so the parser never guesses).
    static func declaringUTF8(_ text: String) -> String {
        guard hasDeclaration(text), let end = text.range(of: "?>") else { return text }
        let declaration = text[..<end.lowerBound]
        let rest = text[end.lowerBound...]
        let version = declaration.range(of: "version").flatMap { key -> String? in
            let after = declaration[key.upperBound...].drop { " \t\r\n=".contains($0) }
            guard let quote = after.first, quote == "\"" || quote == "'" else { return nil }
            return String(after.dropFirst().prefix { $0 != quote }.filter(Self.isPseudoAttributeCharacter))
        } ?? "1.0"
        var standalone = ""
        if let key = declaration.range(of: "standalone") {
            let after = declaration[key.upperBound...].drop { " \t\r\n=".contains($0) }
            if let quote = after.first, quote == "\"" || quote == "'" {
                standalone = " standalone=\"\(after.dropFirst().prefix { $0 != quote }.filter(Self.isPseudoAttributeCharacter))\""
            }
        }
        return "<?xml version=\"\(version)\" encoding=\"UTF-8\"\(standalone)" + rest
    }

    /// `<?xml` then white space: a declaration, not a processing instruction such as `<?xml-stylesheet`.
    static func hasDeclaration(_ text: String) -> Bool {
        guard text.hasPrefix("<?xml"), let next = text.dropFirst(5).first else { return false }
        return next == " " || next == "\t" || next == "\r" || next == "\n"
    }

    /// Version and standalone values are letters, digits and dots: nothing else is copied
    /// into the rewritten declaration.
    static func isPseudoAttributeCharacter(_ character: Character) -> Bool {
        character.isASCII && (character.isLetter || character.isNumber || character == ".")
    }
}
