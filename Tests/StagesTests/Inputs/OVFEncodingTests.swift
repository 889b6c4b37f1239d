import Foundation
import Testing
import TestSupport
@testable import Stages

/// The OVF DOCTYPE refusal holds in every encoding an XML parser would accept: the bytes are
/// decoded first (BOM, Appendix F pattern, declaration), the decoded text is checked, and the
/// parser gets that same text as UTF-8.
@Suite("OVF encodings")
struct OVFEncodingTests {
    /// An encoding under test and whether the document starts with a byte order mark.
    struct Variant: CustomTestStringConvertible, Sendable {
        let encoding: XMLDocumentText.Encoding
        let bom: Bool
        var testDescription: String { "\(encoding.rawValue)\(bom ? " + BOM" : "")" }

        /// What the XML declaration names: the family name, as real exporters write it.
        var declared: String {
            switch encoding {
            case .utf16LE, .utf16BE: "UTF-16"
            case .utf32LE, .utf32BE: "UTF-32"
            default: encoding.rawValue
            }
        }

        func encode(_ text: String) -> Data {
            var bytes: [UInt8] = []
            let scalars = text.unicodeScalars.map(\.value)
            switch encoding {
            case .utf8, .ascii, .isoLatin1:
                if bom { bytes = [0xef, 0xbb, 0xbf] }
                bytes += Array(text.utf8)
            case .utf16LE, .utf16BE:
                let units = (bom ? [0xfeff] : []) + Array(text.utf16)
                for unit in units {
                    let pair = [UInt8(unit & 0xff), UInt8(unit >> 8)]
                    bytes += encoding == .utf16LE ? pair : pair.reversed()
                }
            case .utf32LE, .utf32BE:
                for value in (bom ? [0xfeff] : []) + scalars {
                    let quad = [UInt8(value & 0xff), UInt8(value >> 8 & 0xff), UInt8(value >> 16 & 0xff), UInt8(value >> 24)]
                    bytes += encoding == .utf32LE ? quad : quad.reversed()
                }
            }
            return Data(bytes)
        }

        /// `xml` with its declaration naming this encoding.
        func document(_ xml: String) -> Data {
            let body = xml.replacingOccurrences(of: #"<?xml version="1.0" encoding="UTF-8"?>"#, with: "")
                .replacingOccurrences(of: #"<?xml version="1.0"?>"#, with: "")
                .drop { $0.isWhitespace }
            return encode("<?xml version=\"1.0\" encoding=\"\(declared)\"?>\n" + body)
        }
    }

    static let variants: [Variant] = [
        .init(encoding: .utf8, bom: false), .init(encoding: .utf8, bom: true),
        .init(encoding: .utf16LE, bom: true), .init(encoding: .utf16LE, bom: false),
        .init(encoding: .utf16BE, bom: true), .init(encoding: .utf16BE, bom: false),
        .init(encoding: .utf32LE, bom: true), .init(encoding: .utf32LE, bom: false),
        .init(encoding: .utf32BE, bom: true), .init(encoding: .utf32BE, bom: false),
    ]

    /// A host file an external entity would read, holding a marker no parsed value may contain.
    final class PlantedFile: Sendable {
        let scratch: Scratch
        let path: String
        let marker = "H2K-PLANTED-\(UUID().uuidString)"
        init() throws {
            scratch = try Scratch("planted")
            path = scratch.path("planted")
            try marker.write(toFile: path, atomically: true, encoding: .utf8)
        }

        var externalEntity: String {
            """
            <?xml version="1.0"?>
            <!DOCTYPE Envelope [ <!ENTITY xxe SYSTEM "file://\(path)"> ]>
            <Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><VirtualSystem ovf:id="&xxe;"><Name>&xxe;</Name></VirtualSystem></Envelope>
            """
        }
    }

    func refusal(_ data: Data) -> StageError? {
        #expect(throws: StageError.self) { try OVFDescriptor.parse(data, file: "/queue/evil.ovf") }
    }

    @Test("a DOCTYPE with entities is refused in every encoding", arguments: variants)
    func doctypeRefused(variant: Variant) throws {
        let planted = try PlantedFile()
        for (label, xml) in [("billion laughs", OVFFixtures.entityExpansion), ("external SYSTEM entity", planted.externalEntity)] {
            let error = refusal(variant.document(xml))
            #expect(error?.code == .badInput, "\(label)")
            #expect(error?.file == "/queue/evil.ovf", "\(label)")
            #expect(error?.description.hasPrefix("/queue/evil.ovf: ") == true, "\(label)")
            #expect(error?.message.contains("DOCTYPE") == true, "\(label): \(error?.message ?? "accepted")")
            #expect(error?.description.contains(planted.marker) == false)
        }
    }

    @Test("a DOCTYPE after whitespace, a comment or a processing instruction is still found", arguments: variants)
    func hiddenDoctype(variant: Variant) throws {
        let planted = try PlantedFile()
        let body = planted.externalEntity.replacingOccurrences(of: "<?xml version=\"1.0\"?>\n", with: "")
        for prefix in ["\n \t\r\n", "<!-- exported by ovftool -->\n", "<?vmware hint=\"x\"?>\n", "<!-- a --><?pi?>\n  "] {
            let error = refusal(variant.document("<?xml version=\"1.0\"?>" + prefix + body))
            #expect(error?.message.contains("DOCTYPE") == true, "\(prefix.debugDescription): \(error?.message ?? "accepted")")
        }
    }

    @Test("a real OVF parses the same in every encoding", arguments: variants)
    func realOVFInEveryEncoding(variant: Variant) throws {
        let xml = OVFFixtures.vmware(disks: [.init(href: "web01-disk1.vmdk", size: 1000), .init(href: "web01-disk2.vmdk")])
        let reference = try OVFDescriptor.parse(Data(xml.utf8), file: "web01.ovf")
        let encoded = try OVFDescriptor.parse(variant.document(xml), file: "web01.ovf")
        #expect(encoded == reference)
        #expect(encoded.name == "web01" && encoded.disks.count == 2)
    }

    @Test("non-ASCII names survive decoding (UTF-16 and ISO-8859-1)")
    func nonASCII() throws {
        let xml = OVFFixtures.vmware(name: "wébserveur-Ω", disks: [.init(href: "a.vmdk")])
        let utf16 = Variant(encoding: .utf16LE, bom: true)
        #expect(try OVFDescriptor.parse(utf16.document(xml), file: "x.ovf").name == "wébserveur-Ω")
        let latin = OVFFixtures.vmware(name: "wébserveur", disks: [.init(href: "a.vmdk")])
            .replacingOccurrences(of: #"encoding="UTF-8""#, with: #"encoding="ISO-8859-1""#)
        let latinBytes = Data(latin.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) })
        #expect(try OVFDescriptor.parse(latinBytes, file: "x.ovf").name == "wébserveur")
        // A non-ASCII byte right after the declaration (within the part read for it) is fine too.
        let early = latin.replacingOccurrences(of: "<!--Generated by", with: "<!--Généré by")
        #expect(try OVFDescriptor.parse(Data(early.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) }), file: "x.ovf").name == "wébserveur")
    }

    @Test("undecodable documents and unsupported or contradictory encodings are refused clearly")
    func undecodable() throws {
        let xml = OVFFixtures.vmware(disks: [.init(href: "a.vmdk")])
        let cases: [(String, Data, String)] = [
            ("invalid UTF-8", Data(xml.utf8) + Data([0xff, 0xfe, 0xc3]), "is not valid UTF-8"),
            ("BOM-less UTF-16 without a declaration", Data(Variant(encoding: .utf16LE, bom: false).encode("<Envelope/>")), "NUL"),
            ("Shift_JIS", Data(xml.replacingOccurrences(of: #"encoding="UTF-8""#, with: #"encoding="Shift_JIS""#).utf8), "\"SHIFT_JIS\", which is not supported"),
            ("EBCDIC", Data([0x4c, 0x6f, 0xa7, 0x94, 0x93, 0x40]), "is not valid UTF-8"),
            ("UTF-16 BOM declaring UTF-8", Variant(encoding: .utf16LE, bom: true).encode(xml), "declares encoding \"UTF-8\", but its bytes are UTF-16LE (byte order mark)"),
            ("odd UTF-16 length", Variant(encoding: .utf16BE, bom: true).document(xml) + Data([0x00]), "is not valid UTF-16BE"),
            ("lone surrogate", Variant(encoding: .utf16LE, bom: true).encode("<?xml version=\"1.0\"?><Envelope>") + Data([0x00, 0xd8, 0x3c, 0x00]), "is not valid UTF-16LE"),
        ]
        for (label, data, expected) in cases {
            let error = refusal(data)
            #expect(error?.file == "/queue/evil.ovf", "\(label)")
            #expect(error?.message.contains(expected) == true, "\(label): \(error?.message ?? "accepted")")
        }
    }

    @Test("the parser's own guards fire when handed a DTD directly (second line)")
    func parserGuardsRun() throws {
        let planted = try PlantedFile()
        for xml in [OVFFixtures.entityExpansion, planted.externalEntity,
                    "<?xml version=\"1.0\"?><!DOCTYPE Envelope [ <!ELEMENT Envelope ANY> ]><Envelope/>"] {
            let error = #expect(throws: StageError.self) { try OVFXMLTree.parse(Data(xml.utf8), file: "evil.ovf") }
            #expect(error?.message.contains("declares entities or other DTD content") == true, "\(error?.message ?? "accepted")")
            #expect(error?.description.contains(planted.marker) == false)
        }
        // No DTD, an entity reference anyway: never resolved, the parse fails.
        let reference = "<?xml version=\"1.0\"?><Envelope><Name>&xxe;</Name></Envelope>"
        let error = #expect(throws: StageError.self) { try OVFXMLTree.parse(Data(reference.utf8), file: "evil.ovf") }
        #expect(error?.file == "evil.ovf")
    }

    @Test("the head of an OVF decodes for sniffing in every encoding, even cut mid-character", arguments: variants)
    func decodedHead(variant: Variant) {
        let xml = OVFFixtures.vmware(name: "wé", disks: [.init(href: "a.vmdk")])
        let bytes = [UInt8](variant.document(xml))
        for cut in [201, 301, 302, 303, 1001] {
            let head = XMLDocumentText.decodedHead(Array(bytes.prefix(cut)))
            #expect(head?.hasPrefix("<?xml version=\"1.0\" encoding=\"\(variant.declared)\"?>") == true, "cut at \(cut): \(head ?? "nil")")
        }
        #expect(XMLDocumentText.decodedHead(Array("<?xml version=\"1.0\"?>\u{0}".utf8)) == nil)
    }

    @Test("the declaration handed to the parser says UTF-8 and keeps only safe characters")
    func declarationRewritten() {
        #expect(XMLDocumentText.declaringUTF8("<?xml version=\"1.0\" encoding=\"UTF-16\"?><a/>") == "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a/>")
        #expect(XMLDocumentText.declaringUTF8("<?xml version='1.0' standalone='yes'?><a/>") == "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?><a/>")
        #expect(XMLDocumentText.declaringUTF8("<?xml version='1.0\" x=\"<!DOCTYPE'?><a/>") == "<?xml version=\"1.0xDOCTYPE\" encoding=\"UTF-8\"?><a/>")
        #expect(XMLDocumentText.declaringUTF8("<a/>") == "<a/>")
        #expect(XMLDocumentText.declaringUTF8("<?xml-stylesheet href='a'?><a/>") == "<?xml-stylesheet href='a'?><a/>")
        #expect(XMLDocumentText.declaredEncoding(in: "<?xml-stylesheet encoding='UTF-16'?><a/>") == nil)
    }
}
