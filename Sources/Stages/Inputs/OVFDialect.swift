/// Which OVF a descriptor is, told by the namespace of its `<Envelope>`.
///
/// - 0.9: VMware's pre-standard format (ESX 3.x, Workstation 6, early ovftool), in the
///   `http://www.vmware.com/schema/ovf/1/envelope` namespace. Every section is a
///   `<Section xsi:type="ovf:DiskSection_Type">` and the VM a
///   `<Content xsi:type="ovf:VirtualSystem_Type">`; hardware items say `rasd:InstanceId`.
///   The tree builder renames such elements to their 1.x names (`elementName`), so one
///   interpreter reads every dialect.
/// - 1.x: DMTF DSP0243 1.0/1.1 (`…/ovf/envelope/1`): vSphere, ovftool, most appliances.
/// - 2.x: DMTF DSP0243 2.0/2.1 (`…/ovf/envelope/2`): VirtualBox 5+, with `StorageItem`
///   and `EthernetPortItem`.
///
/// An envelope in no namespace is read as 1.x (hand-written descriptors omit it; a note says
/// so). Any other namespace is refused, naming it: a later major version, or something
/// else entirely, would be read wrongly in silence.
public enum OVFDialect: String, Sendable, Equatable {
    case vmware09 = "OVF 0.9 (VMware)"
    case dmtf1 = "OVF 1.x"
    case dmtf2 = "OVF 2.x"

    static let namespaces: [String: OVFDialect] = [
        "http://www.vmware.com/schema/ovf/1/envelope": .vmware09,
        "http://schemas.dmtf.org/ovf/envelope/1": .dmtf1,
        "http://schemas.dmtf.org/ovf/envelope/2": .dmtf2,
    ]

    /// The dialect of a parsed `<Envelope>`, plus a note when it had to be assumed.
    static func of(envelope root: OVFXMLNode, file: String) throws -> (OVFDialect, note: String?) {
        guard let namespace = root.namespaces[root.prefix ?? ""] else {
            return (.dmtf1, "the OVF envelope declares no namespace: read as OVF 1.x")
        }
        guard let dialect = namespaces[namespace] else {
            throw StageError(.badInput, file: file,
                             "the OVF envelope namespace '\(namespace.prefix(200))' is not one we read (OVF 0.9 "
                                 + "http://www.vmware.com/schema/ovf/1/envelope, 1.x http://schemas.dmtf.org/ovf/envelope/1, "
                                 + "2.x http://schemas.dmtf.org/ovf/envelope/2)")
        }
        return (dialect, nil)
    }

    /// The name an element is read under: a 0.9 `<Section>` or `<Content>` takes the name of
    /// its `xsi:type` (`ovf:DiskSection_Type` → `DiskSection`); every other element keeps its
    /// local name. (1.x allows the same `xsi:type` form, rarely written; it is read alike.)
    static func elementName(local: String, attributes: [String: String]) -> String {
        guard local == "Section" || local == "Content" else { return local }
        let typeValue = attributes.first { key, _ in key.hasSuffix(":type") && !key.hasPrefix("xmlns") }?.value
        guard let typeValue else { return local }
        let typeName = OVFXMLNode.localName(typeValue)
        guard typeName.hasSuffix("_Type"), typeName.count > "_Type".count else { return local }
        return String(typeName.dropLast("_Type".count))
    }
}
