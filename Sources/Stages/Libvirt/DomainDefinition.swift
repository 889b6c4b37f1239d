import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// The emitted domain.xml, adjusted for the host it is defined on: a fixed UUID (what makes
/// registration idempotent), the NICs on a bridge or network, and disks as pool volumes.
/// Everything else emit wrote is kept as it is. A class: it edits one parsed document in place.
public final class DomainDefinition {
    let document: XMLDocument
    let file: String

    /// Parses `xml`, read from `file` (named in errors).
    public init(xml: String, file: String) throws {
        do {
            document = try XMLDocument(xmlString: xml, options: [])
        } catch {
            throw StageError(.badInput, file: file, "not a libvirt domain definition: \(error.localizedDescription)")
        }
        self.file = file
        guard document.rootElement()?.name == "domain" else {
            throw StageError(.badInput, file: file, "not a libvirt domain definition (no <domain> root element)")
        }
    }

    var domain: XMLElement? { document.rootElement() }

    public var name: String? {
        domain?.elements(forName: "name").first?.stringValue?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public var uuid: String? {
        domain?.elements(forName: "uuid").first?.stringValue?.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
    }

    /// Sets `<uuid>` right after `<name>`, where libvirt itself puts it.
    public func setUUID(_ value: String) {
        guard let domain else { return }
        if let existing = domain.elements(forName: "uuid").first {
            existing.stringValue = value
            return
        }
        let element = XMLElement(name: "uuid", stringValue: value)
        let children = domain.children ?? []
        let after = children.firstIndex { ($0 as? XMLElement)?.name == "name" }
        domain.insertChild(element, at: after.map { $0 + 1 } ?? 0)
    }

    /// Puts every NIC on host bridge `bridge` (the bridge need not exist to define the domain).
    public func attachInterfaces(toBridge bridge: String) {
        for interface in interfaces {
            setAttribute("type", "bridge", on: interface)
            replaceSource(of: interface, with: ["bridge": bridge])
        }
    }

    /// Puts every NIC on libvirt network `network`.
    public func attachInterfaces(toNetwork network: String) {
        for interface in interfaces {
            setAttribute("type", "network", on: interface)
            replaceSource(of: interface, with: ["network": network])
        }
    }

    /// Points each file-backed disk whose source is a key of `volumes` at that pool volume.
    /// - Returns: how many disks were changed.
    @discardableResult
    public func useVolumes(_ volumes: [String: String], pool: String) -> Int {
        var changed = 0
        for disk in elements("devices", "disk") where disk.attribute(forName: "type")?.stringValue == "file" {
            guard let source = disk.elements(forName: "source").first,
                  let path = source.attribute(forName: "file")?.stringValue,
                  let volume = volumes[path] else { continue }
            setAttribute("type", "volume", on: disk)
            replaceSource(of: disk, with: ["pool": pool, "volume": volume])
            changed += 1
        }
        return changed
    }

    /// Source files of the file-backed disks, in document order.
    public var diskFiles: [String] {
        elements("devices", "disk").compactMap { disk in
            disk.elements(forName: "source").first?.attribute(forName: "file")?.stringValue
        }
    }

    public var xmlString: String {
        document.xmlString(options: [.nodePrettyPrint]) + "\n"
    }

    // MARK: - Helpers

    private var interfaces: [XMLElement] { elements("devices", "interface") }

    private func elements(_ parent: String, _ child: String) -> [XMLElement] {
        (domain?.elements(forName: parent) ?? []).flatMap { $0.elements(forName: child) }
    }

    private func setAttribute(_ name: String, _ value: String, on element: XMLElement) {
        if let attribute = element.attribute(forName: name) {
            attribute.stringValue = value
        } else if let attribute = XMLNode.attribute(withName: name, stringValue: value) as? XMLNode {
            element.addAttribute(attribute)
        }
    }

    /// Replaces the element's `<source>` (keeping its position) with one carrying `attributes`.
    private func replaceSource(of element: XMLElement, with attributes: KeyValuePairs<String, String>) {
        let source = XMLElement(name: "source")
        for (name, value) in attributes {
            if let attribute = XMLNode.attribute(withName: name, stringValue: value) as? XMLNode {
                source.addAttribute(attribute)
            }
        }
        if let existing = element.elements(forName: "source").first {
            element.replaceChild(at: existing.index, with: source)
        } else {
            let children = element.children ?? []
            // After <mac> and <driver> when present, as libvirt writes it.
            let after = children.lastIndex { ["mac", "driver"].contains(($0 as? XMLElement)?.name ?? "") }
            element.insertChild(source, at: after.map { $0 + 1 } ?? 0)
        }
    }
}
