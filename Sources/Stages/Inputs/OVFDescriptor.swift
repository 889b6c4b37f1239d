import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// What an OVF descriptor says about its VM: name, CPUs, memory, firmware, disks in
/// controller order, NICs. OVF 1.x and 2.x, as VMware and VirtualBox export them.
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
final class OVFXMLNode {
    let name: String
    let attributes: [String: String]
    var children: [OVFXMLNode] = []
    var text = ""

    init(name: String, attributes: [String: String]) {
        self.name = name
        self.attributes = attributes
    }

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
        for (key, value) in attributeDict where !key.hasPrefix("xmlns") {
            attributes[OVFXMLNode.localName(key)] = value
        }
        let node = OVFXMLNode(name: OVFXMLNode.localName(elementName), attributes: attributes)
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

/// Turns the element tree into an `OVFDescriptor`.
private struct OVFInterpreter {
    let root: OVFXMLNode
    let file: String

    // CIM resource types (DMTF CIM_ResourceAllocationSettingData).
    private enum ResourceType: Int {
        case processor = 3, memory = 4, ideController = 5, scsiController = 6, ethernet = 10
        case disk = 17, otherStorageController = 20
        case sataController = 26  // not in DSP0243 1.x but used by some exporters
    }

    private struct HardwareItem {
        var instanceID: String
        var resourceType: Int
        var node: OVFXMLNode
        var parent: String? { node.childText("Parent") }
        var address: Int { Int(node.childText("AddressOnParent") ?? "") ?? Int.max }
    }

    func descriptor() throws -> OVFDescriptor {
        let files = try fileReferences()
        let diskSection = root.descendants("DiskSection").first
        let diskEntries = diskSection?.all("Disk") ?? []

        let systems = root.descendants("VirtualSystem")
        guard let system = systems.first else {
            throw StageError(.badInput, file: file, "OVF descriptor has no VirtualSystem")
        }
        guard systems.count == 1 else {
            throw StageError(.badInput, file: file, "OVF describes \(systems.count) virtual machines; only single-VM OVFs are supported")
        }
        let name = system.childText("Name").flatMap { $0.isEmpty ? nil : $0 } ?? system.attributes["id"] ?? ""
        guard !name.isEmpty else {
            throw StageError(.badInput, file: file, "OVF VirtualSystem has neither a Name nor an ovf:id")
        }

        let hardware = system.child("VirtualHardwareSection")
        let items = hardwareItems(hardware)
        let vcpus = items.first { $0.resourceType == ResourceType.processor.rawValue }
            .flatMap { Int($0.node.childText("VirtualQuantity") ?? "") }
        let memoryMiB = try items.first { $0.resourceType == ResourceType.memory.rawValue }.map(memoryMiB)

        let disks = try orderedDisks(items: items, diskEntries: diskEntries, files: files)
        let nics = networkInterfaces(items: items, system: system)
        let os = system.child("OperatingSystemSection")
        let osHint = os?.childText("Description").flatMap { $0.isEmpty ? nil : $0 } ?? os?.attributes["osType"]
        return OVFDescriptor(name: name, vcpus: vcpus, memoryMiB: memoryMiB, firmware: firmware(system: system, hardware: hardware),
                             disks: disks, nics: nics, osHint: osHint, referencedFiles: files.values.map(\.href).sorted())
    }

    private struct FileReference {
        var href: String
        var size: UInt64?
        var compression: String?
    }

    private func fileReferences() throws -> [String: FileReference] {
        var files: [String: FileReference] = [:]
        for node in root.child("References")?.all("File") ?? [] {
            guard let id = node.attributes["id"], let href = node.attributes["href"] else {
                throw StageError(.badInput, file: file, "OVF References has a File without ovf:id or ovf:href")
            }
            guard PlainFileName.isPlain(href) else {
                throw StageError(.badInput, file: file,
                                 "OVF file reference '\(href)' is not a plain file name (paths, '..', URLs and absolute names are refused)")
            }
            files[id] = FileReference(href: href, size: node.attributes["size"].flatMap { UInt64($0) },
                                      compression: node.attributes["compression"])
        }
        return files
    }

    /// `Item` (rasd, OVF 1.x and 2.x), `StorageItem` (sasd) and `EthernetPortItem` (epasd).
    private func hardwareItems(_ hardware: OVFXMLNode?) -> [HardwareItem] {
        guard let hardware else { return [] }
        return hardware.children.compactMap { node in
            guard ["Item", "StorageItem", "EthernetPortItem"].contains(node.name),
                  let type = Int(node.childText("ResourceType") ?? "") else { return nil }
            return HardwareItem(instanceID: node.childText("InstanceID") ?? "", resourceType: type, node: node)
        }
    }

    private func memoryMiB(_ item: HardwareItem) throws -> Int {
        guard let quantity = UInt64(item.node.childText("VirtualQuantity") ?? "") else {
            throw StageError(.badInput, file: file, "OVF memory item has no numeric VirtualQuantity")
        }
        let units = item.node.childText("AllocationUnits") ?? "byte * 2^20"
        guard let unitBytes = Self.bytes(perUnit: units) else {
            throw StageError(.badInput, file: file, "OVF memory AllocationUnits '\(units)' not understood")
        }
        let (bytes, overflow) = quantity.multipliedReportingOverflow(by: unitBytes)
        guard !overflow, bytes / (1 << 20) <= UInt64(Int32.max) else {
            throw StageError(.badInput, file: file, "OVF memory size \(quantity) × '\(units)' is implausible")
        }
        return Int(bytes / (1 << 20))
    }

    /// "byte * 2^20", "byte*2^30", "MegaBytes", "GigaBytes", "KiloBytes", "byte".
    static func bytes(perUnit units: String) -> UInt64? {
        let compact = units.lowercased().filter { !$0.isWhitespace }
        switch compact {
        case "byte", "bytes": return 1
        case "kilobytes", "kb", "kib": return 1 << 10
        case "megabytes", "mb", "mib": return 1 << 20
        case "gigabytes", "gb", "gib": return 1 << 30
        case "terabytes", "tb", "tib": return 1 << 40
        default: break
        }
        guard compact.hasPrefix("byte*2^"), let exponent = Int(compact.dropFirst("byte*2^".count)), (0...50).contains(exponent) else {
            return nil
        }
        return 1 << UInt64(exponent)
    }

    /// Disk items sorted by controller (in document order) then address on the controller.
    private func orderedDisks(items: [HardwareItem], diskEntries: [OVFXMLNode],
                              files: [String: FileReference]) throws -> [OVFDescriptor.Disk] {
        let controllerTypes: Set<Int> = [ResourceType.ideController.rawValue, ResourceType.scsiController.rawValue,
                                         ResourceType.otherStorageController.rawValue, ResourceType.sataController.rawValue]
        let controllerRank = Dictionary(items.filter { controllerTypes.contains($0.resourceType) }.enumerated()
            .map { ($1.instanceID, $0) }, uniquingKeysWith: { first, _ in first })
        let diskItems = items.enumerated().filter { $1.resourceType == ResourceType.disk.rawValue }
        let sorted = diskItems.sorted { lhs, rhs in
            let left = (lhs.element.parent.flatMap { controllerRank[$0] } ?? Int.max, lhs.element.address, lhs.offset)
            let right = (rhs.element.parent.flatMap { controllerRank[$0] } ?? Int.max, rhs.element.address, rhs.offset)
            return left < right
        }
        var disks: [OVFDescriptor.Disk] = []
        for (_, item) in sorted {
            guard let resource = item.node.all("HostResource").first?.text.trimmingCharacters(in: .whitespacesAndNewlines),
                  !resource.isEmpty else { continue }  // an empty CD-ROM-like slot
            disks.append(try disk(forHostResource: resource, diskEntries: diskEntries, files: files))
        }
        return disks
    }

    private func disk(forHostResource resource: String, diskEntries: [OVFXMLNode],
                      files: [String: FileReference]) throws -> OVFDescriptor.Disk {
        let path = resource.hasPrefix("ovf:") ? String(resource.dropFirst(4)) : resource
        if path.hasPrefix("/disk/") {
            let id = String(path.dropFirst("/disk/".count))
            guard let entry = diskEntries.first(where: { $0.attributes["diskId"] == id }) else {
                throw StageError(.badInput, file: file, "OVF disk item refers to '\(resource)', which DiskSection does not define")
            }
            guard let fileRef = entry.attributes["fileRef"] else {
                throw StageError(.badInput, file: file,
                                 "OVF disk '\(id)' has no ovf:fileRef (empty disks to be created are not supported)")
            }
            guard let reference = files[fileRef] else {
                throw StageError(.badInput, file: file, "OVF disk '\(id)' refers to file id '\(fileRef)', which References does not list")
            }
            var capacity: UInt64?
            if let value = entry.attributes["capacity"].flatMap({ UInt64($0) }) {
                let unit = Self.bytes(perUnit: entry.attributes["capacityAllocationUnits"] ?? "byte") ?? 1
                let (bytes, overflow) = value.multipliedReportingOverflow(by: unit)
                capacity = overflow ? nil : bytes
            }
            return OVFDescriptor.Disk(diskID: id, href: reference.href, fileSize: reference.size, capacityBytes: capacity,
                                      formatURI: entry.attributes["format"], compression: reference.compression)
        }
        if path.hasPrefix("/file/") {
            let id = String(path.dropFirst("/file/".count))
            guard let reference = files[id] else {
                throw StageError(.badInput, file: file, "OVF disk item refers to '\(resource)', which References does not list")
            }
            return OVFDescriptor.Disk(diskID: id, href: reference.href, fileSize: reference.size, capacityBytes: nil,
                                      formatURI: nil, compression: reference.compression)
        }
        throw StageError(.badInput, file: file, "OVF disk HostResource '\(resource)' is neither ovf:/disk/… nor ovf:/file/…")
    }

    private func networkInterfaces(items: [HardwareItem], system: OVFXMLNode) -> [NetworkInterface] {
        var nics = items.filter { $0.resourceType == ResourceType.ethernet.rawValue }.map { item in
            NetworkInterface(mac: item.node.childText("Address").flatMap(Self.normalisedMAC),
                             network: item.node.childText("Connection").flatMap { $0.isEmpty ? nil : $0 })
        }
        // VirtualBox keeps MACs in its own section: <Adapter slot="0" enabled="true" MACAddress="080027AABBCC">.
        let adapters = system.descendants("Adapter")
            .filter { $0.attributes["enabled"] == "true" }
            .compactMap { $0.attributes["MACAddress"].flatMap(Self.normalisedMAC) }
        for index in nics.indices where nics[index].mac == nil && index < adapters.count {
            nics[index].mac = adapters[index]
        }
        return nics
    }

    /// `00:50:56:AB:CD:EF`, `00-50-56-ab-cd-ef` or `005056ABCDEF` → `00:50:56:ab:cd:ef`.
    static func normalisedMAC(_ text: String) -> String? {
        let hex = text.lowercased().filter { $0.isHexDigit }
        guard hex.count == 12, text.filter({ !$0.isHexDigit && $0 != ":" && $0 != "-" }).isEmpty else { return nil }
        var pairs: [String] = []
        var rest = Substring(hex)
        while !rest.isEmpty {
            pairs.append(String(rest.prefix(2)))
            rest = rest.dropFirst(2)
        }
        return pairs.joined(separator: ":")
    }

    private func firmware(system: OVFXMLNode, hardware: OVFXMLNode?) -> Firmware {
        // VMware: <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
        if let config = hardware?.all("Config").first(where: { $0.attributes["key"] == "firmware" }),
           let value = config.attributes["value"]?.lowercased() {
            return value.hasPrefix("efi") ? .uefi : .bios
        }
        // VirtualBox: <vbox:Machine> … <Hardware><Firmware type="EFI"/>
        if let type = system.descendants("Firmware").first?.attributes["type"]?.uppercased() {
            return type.hasPrefix("EFI") ? .uefi : .bios
        }
        return .bios
    }
}

extension OVFDescriptor {
    /// Bytes per OVF allocation unit ("byte * 2^20", "MegaBytes"…), nil when not understood.
    static func bytesPerUnit(_ units: String) -> UInt64? {
        OVFInterpreter.bytes(perUnit: units)
    }
}
