import Foundation

/// Bytes that kill the process inside Foundation's `XMLParser` on Linux (swift-corelibs
/// FoundationXML over libxml2, Swift 6.3.1), found by fuzzing the OVF reader:
///
/// - a byte sequence that is not UTF-8 in a comment or a name: a trap in
///   `_NSXMLParserComment` / `_NSXMLParserStartElementNs`;
/// - a processing instruction without data (`<?pi?>`): `strlen(NULL)` in
///   `_NSXMLParserProcessingInstruction`, a segmentation fault.
///
/// An OVF is UTF-8 and needs no processing instruction but its XML declaration, so a document
/// with either is refused before any `XMLParser` sees it.
enum XMLParserHazards {
    /// What is wrong with `data`, or nil when `XMLParser` may be given it.
    static func problem(in data: Data) -> String? {
        guard String(validating: data, as: UTF8.self) != nil else {
            return "it is not valid UTF-8 text"
        }
        let bytes = [UInt8](data)
        var start = 0
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { start = 3 }
        let opening = Array("<?".utf8)
        var index = start
        while index + 1 < bytes.count {
            if bytes[index] == opening[0], bytes[index + 1] == opening[1] {
                // Only the XML declaration, and only as the very first thing in the document.
                let isDeclaration = index == start && bytes[(index + 2)...].starts(with: Array("xml".utf8))
                    && index + 5 < bytes.count && [0x20, 0x09, 0x0D, 0x0A].contains(bytes[index + 5])
                guard isDeclaration else {
                    return "it contains a processing instruction at byte \(index) (OVF uses none but the XML declaration)"
                }
            }
            index += 1
        }
        return nil
    }
}
