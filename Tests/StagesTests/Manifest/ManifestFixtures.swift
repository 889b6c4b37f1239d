import Foundation
@testable import Stages

/// Artifact Manifests for tests, as plain dictionaries written out as JSON or YAML.
enum ManifestFixtures {
    /// The Artifact Manifest hypersdk's builder writes ( Go `omitempty` applied: disk-0 carries no
    /// `boot_order_hint`), with the disk paths and disk-0's checksum supplied by the test.
    static func upstreamExample(disk0: String, disk1: String, disk0Checksum: String?) -> [String: Any] {
        var first: [String: Any] = ["id": "disk-0", "source_format": "vmdk", "bytes": 107_374_182_400,
                                    "local_path": disk0, "label": "disk-0", "disk_type": "boot"]
        if let disk0Checksum { first["checksum"] = disk0Checksum }
        let second: [String: Any] = ["id": "disk-1", "source_format": "vmdk", "bytes": 536_870_912_000,
                                     "local_path": disk1, "boot_order_hint": 1, "label": "disk-1", "disk_type": "data"]
        return [
            "manifest_version": "1.0",
            "source": ["provider": "vsphere", "vm_id": "vm-1234", "vm_name": "web01",
                       "datacenter": "https://vc.example/sdk", "export_timestamp": "2026-01-21T18:30:00Z",
                       "export_method": "hypersdk-govc"],
            "vm": ["cpu": 4, "mem_gb": 16, "firmware": "uefi", "os_hint": "linux", "os_version": "Ubuntu 22.04"],
            "disks": [first, second],
            "nics": [["id": "nic-0", "mac": "00-50-56-AB-CD-EF", "network": "VM Network"]],
            "notes": ["Exported from vSphere by hypersdk v0.1.0", "Export method: ovf"],
            "metadata": ["hypersdk_version": "0.1.0", "job_id": "vm-1234", "created_at": "2026-01-21T18:30:00Z",
                         "tags": ["provider": "vsphere", "export_format": "ovf", "vcenter_url": "https://vc.example/sdk"]],
            "pipeline": ["inspect": ["enabled": true, "collect_guest_info": true],
                         "fix": ["enabled": true, "backup": true, "update_grub": true, "regen_initramfs": true,
                                 "fstab_mode": "stabilize-all", "remove_vmware_tools": true],
                         "convert": ["enabled": true, "compress": true],
                         "validate": ["enabled": true, "check_image_integrity": true]],
            "output": ["directory": "/exports/web01", "format": "qcow2"],
            "options": ["verbose": 1, "report": ["enabled": true, "path": "report.json"]],
        ]
    }

    /// A minimal valid manifest over the given disks (`id`, `local_path`, optional extras).
    static func minimal(disks: [[String: Any]]) -> [String: Any] {
        ["manifest_version": "1.0",
         "disks": disks.map { disk in
             var full: [String: Any] = ["source_format": "raw", "bytes": 0]
             full.merge(disk) { _, new in new }
             return full
         }]
    }

    static func json(_ document: [String: Any]) throws -> Data {
        try JSONSerialization.data(withJSONObject: document, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }

    /// Block-style YAML with plain (unquoted) scalars wherever YAML allows, so that the
    /// test exercises YAML's own typing of `1.0`, `sha256:…`, MACs and timestamps.
    static func yaml(_ document: [String: Any]) -> String {
        var lines: [String] = []
        emit(document, indent: 0, into: &lines)
        return lines.joined(separator: "\n") + "\n"
    }

    private static func emit(_ value: Any, indent: Int, into lines: inout [String]) {
        let pad = String(repeating: " ", count: indent)
        switch value {
        case let map as [String: Any]:
            for key in map.keys.sorted() {
                let child = map[key] ?? ""
                if let scalar = scalarText(child) {
                    lines.append("\(pad)\(key): \(scalar)")
                } else {
                    lines.append("\(pad)\(key):")
                    emit(child, indent: indent + 2, into: &lines)
                }
            }
        case let list as [Any]:
            for element in list {
                if let scalar = scalarText(element) {
                    lines.append("\(pad)- \(scalar)")
                } else {
                    // "- " then the mapping's first key on the same line, the rest aligned under it.
                    var nested: [String] = []
                    emit(element, indent: indent + 2, into: &nested)
                    for (index, line) in nested.enumerated() {
                        lines.append(index == 0 ? "\(pad)- " + line.dropFirst(indent + 2) : line)
                    }
                }
            }
        default:
            lines.append("\(pad)\(scalarText(value) ?? "")")
        }
    }

    private static func scalarText(_ value: Any) -> String? {
        switch value {
        case let flag as Bool: flag ? "true" : "false"
        case let number as Int: String(number)
        case let text as String:
            // Plain unless the text would be read as something else or breaks the syntax.
            text.contains(": ") || text.hasPrefix("-") || text.contains("#") || text.isEmpty || text == "true" || text == "false"
                ? "\"\(text)\"" : text
        default: nil
        }
    }

    /// Writes `document` as `<name>` (JSON unless the name ends in .yaml/.yml).
    @discardableResult
    static func write(_ document: [String: Any], named name: String, in directory: URL) throws -> URL {
        let url = directory.appendingPathComponent(name)
        if ArtifactManifest.Syntax(fileName: name) == .yaml {
            try yaml(document).write(to: url, atomically: true, encoding: .utf8)
        } else {
            try json(document).write(to: url)
        }
        return url
    }

    /// Parses and validates without touching any disk file.
    static func parseAndValidate(_ document: [String: Any], syntax: ArtifactManifest.Syntax = .json,
                                 file: String = "web01.json") throws -> ArtifactManifest {
        let data = syntax == .json ? try json(document) : Data(yaml(document).utf8)
        let manifest = try ArtifactManifest.parse(data, syntax: syntax, file: file)
        try manifest.validate(file: file)
        return manifest
    }

    static let zeroChecksum = "sha256:" + String(repeating: "0", count: 64)
}
