import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// What an OVF descriptor says about its VM: name, CPUs, memory, firmware, disks in
/// controller order, NICs, and which disk boots. OVF 0.9 (VMware's pre-DMTF dialect), 1.x and
/// 2.x, as VMware (with its vSphere extensions), VirtualBox and appliance vendors export them;
/// see `OVFDialect` and `OVFSectionPolicy` for what is read and what is refused.
public struct OVFDescriptor: Sendable, Equatable {
    /// One virtual disk and the file holding it.
    public struct Disk: Sendable, Equatable {
        /// `ovf:diskId` (or the file id when the item names a file directly).
        public var diskID: String
        /// The file's `ovf:href`: always a plain file name (checked when parsing).
        public var href: String
        /// Stored size the References section promises, when given.
        public var fileSize: UInt64?
        /// Virtual capacity in bytes, when given.
        public var capacityBytes: UInt64?
        /// `ovf:format` URI (e.g. the VMware streamOptimized URI).
        public var formatURI: String?
        /// `ovf:compression="gzip"` on the file reference.
        public var compression: String?
        /// `ovf:chunkSize` on the file reference: the file is split into `href.000000000`… parts.
        public var chunkSize: UInt64?
        /// `InstanceID` of the hardware item holding the disk (what `vmw:BootOrderSection` names).
        public var itemInstanceID: String?
    }

    public var name: String
    public var vcpus: Int?
    public var memoryMiB: Int?
    public var firmware: Firmware
    /// In controller order, then address on the controller: the order the VM sees them.
    public var disks: [Disk]
    public var nics: [NetworkInterface]
    /// `OperatingSystemSection` description or `vmw:osType`.
    public var osHint: String?
    /// Every file the References section lists (for manifest cross-checks).
    public var referencedFiles: [String]
    /// Index in `disks` of the disk the source boots from (`vmw:BootOrderSection`; else 0).
    public var bootDiskIndex: Int = 0
    /// Which OVF the document is.
    public var dialect: OVFDialect = .dmtf1
    /// What was read, chosen or ignored on the way, worth journaling (unknown sections,
    /// the deployment option chosen, secure boot, an NVRAM file, files that are not disks).
    public var notes: [String] = []

    /// The `SourceDisk.bootOrderHint` of `disks[index]`: the boot disk 0, the others after it
    /// in controller order.
    public func bootOrderHint(ofDiskAt index: Int) -> Int {
        index == bootDiskIndex ? 0 : index + 1
    }
}

extension OVFDescriptor {
    /// OVF files are a few hundred KiB at most.
    static let maximumBytes = 16 << 20

    /// Reads and parses an OVF file.
    public static func load(_ url: URL) throws -> OVFDescriptor {
        let reader = try ByteRangeReader(path: url.path)
        guard reader.size <= UInt64(maximumBytes) else {
            throw StageError(.badInput, file: url.path, "OVF descriptor of \(reader.size) bytes is implausibly large")
        }
        return try parse(try reader.read(at: 0, count: maximumBytes), file: url.path)
    }

    /// Parses OVF XML. `file` names the descriptor in errors.
    ///
    /// The bytes are decoded first, as an XML processor would (`XMLDocumentText`: byte order
    /// mark, the `<?xml` pattern, the declared encoding); a document that does not decode,
    /// or is in an encoding we do not read, is refused. A DOCTYPE (and with it any ENTITY
    /// declaration) anywhere in the decoded text is refused: OVF needs neither, and they are
    /// how external-entity (XXE) and entity-expansion attacks work. The parser is then
    /// handed that same text re-encoded as UTF-8, so the check and the parse see one
    /// document; its own entity guards (`OVFXMLTree`) stay as a second line.
    public static func parse(_ data: Data, file: String) throws -> OVFDescriptor {
        guard data.count <= maximumBytes else {
            throw StageError(.badInput, file: file, "OVF descriptor of \(data.count) bytes is implausibly large")
        }
        let document: XMLDocumentText
        do {
            document = try XMLDocumentText(decoding: data)
        } catch {
            throw StageError(.badInput, file: file, "OVF descriptor refused: it \(error.reason)")
        }
        try refuseDeclarations(document.text, file: file)
        let root = try OVFXMLTree.parse(document.utf8Document, file: file)
        guard root.name == "Envelope" else {
            throw StageError(.badInput, file: file, "not an OVF descriptor: the root element is <\(root.name)>, not <Envelope>")
        }
        return try OVFInterpreter(root: root, file: file).descriptor()
    }

    /// Refuses `<!DOCTYPE` and `<!ENTITY` anywhere in the decoded text, in any letter case
    /// (after a comment, a processing instruction or whitespace too; inside a comment it is
    /// refused as well: an OVF has no reason to carry one).
    static func refuseDeclarations(_ text: String, file: String) throws {
        let lowered = text.utf8.map { ($0 >= 0x41 && $0 <= 0x5a) ? $0 + 0x20 : $0 }
        for keyword in ["<!doctype", "<!entity"] where lowered.firstRange(of: Array(keyword.utf8)) != nil {
            throw StageError(.badInput, file: file,
                             "OVF descriptor contains a \(keyword.dropFirst(2).uppercased()) declaration; refused (external entities and entity expansion are not allowed)")
        }
    }
}

/// A minimal element tree: local names (namespace prefixes dropped), attributes by local name.
/// The prefix and the namespace declarations are kept so the dialect (which envelope
/// namespace) and the names of unknown sections can be told.
final class OVFXMLNode {
    let name: String
    let attributes: [String: String]
    /// The element's prefix as written (`ovf` in `ovf:Envelope`), nil without one.
    let prefix: String?
    /// `xmlns` (key "") and `xmlns:p` (key "p") declarations on this element.
    let namespaces: [String: String]
    var children: [OVFXMLNode] = []
    var text = ""

    init(name: String, attributes: [String: String], prefix: String? = nil, namespaces: [String: String] = [:]) {
        self.name = name
        self.attributes = attributes
        self.prefix = prefix
        self.namespaces = namespaces
    }

    /// The name as the document spells it (`vmw:BootOrderSection`), for messages.
    var qualifiedName: String { prefix.map { "\($0):\(name)" } ?? name }

    func child(_ name: String) -> OVFXMLNode? { children.first { $0.name == name } }
    func all(_ name: String) -> [OVFXMLNode] { children.filter { $0.name == name } }
    func childText(_ name: String) -> String? {
        child(name).map { $0.text.trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    /// Depth-first search for descendants named `name`.
    func descendants(_ name: String) -> [OVFXMLNode] {
        var found: [OVFXMLNode] = []
        var stack = Array(children.reversed())
        while let node = stack.popLast() {
            if node.name == name { found.append(node) }
            stack.append(contentsOf: node.children.reversed())
        }
        return found
    }

    static func localName(_ qualified: String) -> String {
        qualified.split(separator: ":").last.map(String.init) ?? qualified
    }
}

/// Builds an `OVFXMLNode` tree with Foundation's XMLParser, entities off, sizes bounded.
final class OVFXMLTree: NSObject, XMLParserDelegate {
    static let maximumElements = 200_000
    static let maximumDepth = 64

    private var stack: [OVFXMLNode] = []
    private var root: OVFXMLNode?
    private var elementCount = 0
    private var limitExceeded: String?
    private var sawEntityDeclaration = false

    static func parse(_ data: Data, file: String) throws -> OVFXMLNode {
        // FoundationXML on Linux never calls the entity-declaration delegate methods (no
        // entity SAX callback is registered; declared entities are substituted silently), so
        // the guard that must hold is here, on the exact bytes the parser is handed.
        let lowered = data.map { ($0 >= 0x41 && $0 <= 0x5a) ? $0 + 0x20 : $0 }
        for keyword in ["<!doctype", "<!entity"] where lowered.firstRange(of: Array(keyword.utf8)) != nil {
            throw StageError(.badInput, file: file, "OVF descriptor declares entities or other DTD content; refused")
        }
        // FoundationXML's parser itself traps or crashes on some inputs (found by fuzzing):
        // those are refused on the same bytes, before it sees them.
        if let problem = XMLParserHazards.problem(in: data) {
            throw StageError(.badInput, file: file, "OVF descriptor refused: \(problem)")
        }
        let builder = OVFXMLTree()
        let parser = XMLParser(data: data)
        parser.shouldResolveExternalEntities = false
        parser.shouldProcessNamespaces = false
        parser.delegate = builder
        let ok = parser.parse()
        if let limit = builder.limitExceeded {
            throw StageError(.badInput, file: file, "OVF descriptor refused: \(limit)")
        }
        if builder.sawEntityDeclaration {
            throw StageError(.badInput, file: file, "OVF descriptor declares entities or other DTD content; refused")
        }
        guard ok, let root = builder.root else {
            let reason = parser.parserError.map { "\($0.localizedDescription)" } ?? "no root element"
            throw StageError(.badInput, file: file, "malformed OVF XML near line \(parser.lineNumber): \(reason)")
        }
        return root
    }

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                qualifiedName qName: String?, attributes attributeDict: [String: String] = [:]) {
        elementCount += 1
        guard elementCount <= Self.maximumElements, stack.count < Self.maximumDepth else {
            limitExceeded = "more than \(Self.maximumElements) elements or deeper than \(Self.maximumDepth) levels"
            parser.abortParsing()
            return
        }
        var attributes: [String: String] = [:]
        var namespaces: [String: String] = [:]
        for (key, value) in attributeDict {
            if key == "xmlns" {
                namespaces[""] = value
            } else if key.hasPrefix("xmlns:") {
                namespaces[String(key.dropFirst("xmlns:".count))] = value
            } else {
                attributes[OVFXMLNode.localName(key)] = value
            }
        }
        let parts = elementName.split(separator: ":", maxSplits: 1)
        let prefix = parts.count == 2 ? String(parts[0]) : nil
        // OVF 0.9 writes every section as <Section xsi:type="ovf:DiskSection_Type"> and the VM
        // as <Content xsi:type="ovf:VirtualSystem_Type">: named here as 1.x names them.
        let name = OVFDialect.elementName(local: OVFXMLNode.localName(elementName), attributes: attributeDict)
        let node = OVFXMLNode(name: name, attributes: attributes, prefix: prefix, namespaces: namespaces)
        if let parent = stack.last { parent.children.append(node) } else if root == nil { root = node }
        stack.append(node)
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?) {
        _ = stack.popLast()
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        guard let node = stack.last, node.text.utf8.count < 64 * 1024 else { return }
        node.text += string
    }

    // Third line: whatever DTD content FoundationXML does report (element, attribute,
    // notation and unparsed-entity declarations; a reference to an undeclared entity) stops
    // the parse, and no external entity is ever fetched. The entity-declaration methods are
    // kept for platforms whose XMLParser calls them.
    func parser(_ parser: XMLParser, foundInternalEntityDeclarationWithName name: String, value: String?) {
        refuseDeclaration(parser)
    }

    func parser(_ parser: XMLParser, foundExternalEntityDeclarationWithName name: String, publicID: String?, systemID: String?) {
        refuseDeclaration(parser)
    }

    func parser(_ parser: XMLParser, foundUnparsedEntityDeclarationWithName name: String, publicID: String?,
                systemID: String?, notationName: String?) {
        refuseDeclaration(parser)
    }

    func parser(_ parser: XMLParser, foundNotationDeclarationWithName name: String, publicID: String?, systemID: String?) {
        refuseDeclaration(parser)
    }

    func parser(_ parser: XMLParser, foundElementDeclarationWithName elementName: String, model: String) {
        refuseDeclaration(parser)
    }

    func parser(_ parser: XMLParser, foundAttributeDeclarationWithName attributeName: String, forElement elementName: String,
                type: String?, defaultValue: String?) {
        refuseDeclaration(parser)
    }

    func parser(_ parser: XMLParser, resolveExternalEntityName name: String, systemID: String?) -> Data? {
        refuseDeclaration(parser)
        return nil
    }

    private func refuseDeclaration(_ parser: XMLParser) {
        sawEntityDeclaration = true
        parser.abortParsing()
    }
}
