import Foundation
import Stages

/// Removes the old NIC's MAC address from the guest's network configuration and makes the
/// interface name the configuration uses (ens192, ens160, eth0…) appear on the virtio NIC.
///
/// Name choice: a systemd `.link` file matching `Driver=virtio_net` that names the NIC back
/// to the old name. It works for every network stack that reads interface names (ifupdown,
/// ifcfg, netplan, NetworkManager profiles bound to a name, networkd), needs no knowledge of
/// the new predictable name (enp1s0 on q35, but it depends on the PCI slot the domain XML
/// gives the NIC), is applied by udev before any network service starts, and is one file to
/// delete to undo. Rewriting each stack's config to a guessed new name would be wrong as
/// soon as the slot differs. It is written only when the configs name exactly one
/// interface; with several, which virtio NIC is which old one cannot be known here, so the
/// names are left and the report says so.
struct NetworkPinningRemover: Sendable {
    static let linkFilePath = "/etc/systemd/network/10-hyper2kvm-virtio-net.link"

    init() {}

    /// A config with its pinning removed, plus the interface names it configures.
    struct Result: Equatable, Sendable {
        var rewrite: TextRewriteResult
        var interfaceNames: [String]
    }

    // MARK: - Pure rewriters (one per config format)

    /// ifupdown `/etc/network/interfaces[.d/*]`: `hwaddress` lines commented out.
    static func ifupdown(_ text: String) -> Result {
        var names: [String] = []
        let rewrite = commentOutLines(text) { fields in
            if fields.first == "iface", fields.count > 1, fields[1] != "lo" { names.append(fields[1]) }
            return fields.first == "hwaddress"
        }
        return Result(rewrite: rewrite, interfaceNames: unique(names))
    }

    /// RHEL/SUSE `ifcfg-*`: `HWADDR=` and `MACADDR=` commented out. The interface is
    /// `DEVICE=`, else the file's suffix: SUSE's wicked writes `ifcfg-eth0` with no DEVICE line
    /// (and initscripts read it the same way).
    static func ifcfg(_ text: String, path: String = "") -> Result {
        var result = ifcfgLines(text)
        if result.interfaceNames.isEmpty, let file = path.split(separator: "/").last, file.hasPrefix("ifcfg-") {
            let suffix = String(file.dropFirst("ifcfg-".count))
            if !suffix.isEmpty, suffix != "lo" { result.interfaceNames = [suffix] }
        }
        return result
    }

    private static func ifcfgLines(_ text: String) -> Result {
        var names: [String] = []
        let rewrite = commentOutLines(text) { fields in
            guard let first = fields.first else { return false }
            if first.hasPrefix("DEVICE=") { names.append(unquoted(String(first.dropFirst("DEVICE=".count)))) }
            return first.hasPrefix("HWADDR=") || first.hasPrefix("MACADDR=")
        }
        return Result(rewrite: rewrite, interfaceNames: unique(names.filter { $0 != "lo" && !$0.isEmpty }))
    }

    /// NetworkManager keyfiles: `mac-address=` commented out (the profile then applies to
    /// any ethernet device, or to its `interface-name=`).
    static func networkManager(_ text: String) -> Result {
        var names: [String] = []
        let rewrite = commentOutLines(text) { fields in
            guard let first = fields.first else { return false }
            if first.hasPrefix("interface-name=") { names.append(String(first.dropFirst("interface-name=".count))) }
            return first.hasPrefix("mac-address=")
        }
        return Result(rewrite: rewrite, interfaceNames: unique(names.filter { !$0.isEmpty }))
    }

    /// systemd-networkd `.network`/`.link`: `MACAddress=`/`PermanentMACAddress=` removed.
    /// A `[Match]` section left empty would match every device (or be rejected), so it gets
    /// a condition that means "the virtio NIC" (.link) or "any ethernet" (.network).
    static func systemdNetwork(_ text: String, isLinkFile: Bool) -> Result {
        var lines = text.components(separatedBy: "\n")
        var edits: [TextEdit] = []
        var names: [String] = []
        var section = ""
        var matchHeader: Int?
        var matchConditions = 0
        var removedInMatch = false
        var index = 0
        func closeMatchSection() {
            guard let header = matchHeader, removedInMatch, matchConditions == 0 else { return }
            let condition = isLinkFile ? "Driver=virtio_net" : "Type=ether"
            lines.insert(condition + "  # added by hyper2kvm: the MACAddress= match was removed", at: header + 1)
            edits.append(TextEdit(line: header + 2, before: "", after: lines[header + 1]))
            index += 1
        }
        while index < lines.count {
            let trimmed = lines[index].trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("[") {
                closeMatchSection()
                section = trimmed
                matchHeader = section == "[Match]" ? index : nil
                matchConditions = 0
                removedInMatch = false
            } else if !trimmed.isEmpty, !trimmed.hasPrefix("#"), !trimmed.hasPrefix(";") {
                let key = trimmed.prefix { $0 != "=" }.trimmingCharacters(in: .whitespaces)
                if key == "MACAddress" || key == "PermanentMACAddress" {
                    let before = lines[index]
                    lines[index] = "#" + before + "  # removed by hyper2kvm"
                    edits.append(TextEdit(line: index + 1, before: before, after: lines[index]))
                    if section == "[Match]" { removedInMatch = true }
                } else {
                    if section == "[Match]" { matchConditions += 1 }
                    if key == "Name", section == (isLinkFile ? "[Link]" : "[Match]") {
                        let value = trimmed.drop { $0 != "=" }.dropFirst().trimmingCharacters(in: .whitespaces)
                        names += value.split(separator: " ").map(String.init).filter { !$0.contains("*") }
                    }
                }
            }
            index += 1
        }
        closeMatchSection()
        return Result(rewrite: TextRewriteResult(text: lines.joined(separator: "\n"), edits: edits), interfaceNames: unique(names))
    }

    /// netplan YAML: every `macaddress:` removed; a `match:` left empty is removed with the
    /// `set-name:` that needs it (the interface id, e.g. `ens192:`, then names the device).
    static func netplan(_ text: String) -> Result {
        var lines = text.components(separatedBy: "\n")
        var names: [String] = []
        var removed: [Int] = []
        func indentation(_ line: String) -> Int { line.prefix { $0 == " " }.count }
        func key(_ line: String) -> String {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            return trimmed.hasPrefix("#") ? "" : String(trimmed.prefix { $0 != ":" })
        }

        // Interface ids: the keys one level below `ethernets:`.
        var ethernetsIndent: Int?
        var idIndent: Int?
        for line in lines where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            let indent = indentation(line)
            if let parent = ethernetsIndent, indent <= parent { ethernetsIndent = nil; idIndent = nil }
            if key(line) == "ethernets" { ethernetsIndent = indent; continue }
            if ethernetsIndent != nil {
                if idIndent == nil { idIndent = indent }
                if indent == idIndent { names.append(key(line).trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))) }
            }
        }

        for index in lines.indices where key(lines[index]) == "macaddress" {
            removed.append(index)
        }
        // A `match:` whose only children were macaddress lines goes too, with its set-name.
        for index in lines.indices where key(lines[index]) == "match" {
            let indent = indentation(lines[index])
            var child = index + 1
            var remaining = 0
            while child < lines.count,
                  lines[child].trimmingCharacters(in: .whitespaces).isEmpty || indentation(lines[child]) > indent {
                if !lines[child].trimmingCharacters(in: .whitespaces).isEmpty, !removed.contains(child) { remaining += 1 }
                child += 1
            }
            guard remaining == 0, child > index + 1 else { continue }
            removed.append(index)
            // Siblings at the same indentation under the same interface.
            var sibling = index - 1
            while sibling >= 0, indentation(lines[sibling]) >= indent || lines[sibling].trimmingCharacters(in: .whitespaces).isEmpty {
                if indentation(lines[sibling]) == indent, key(lines[sibling]) == "set-name" { removed.append(sibling) }
                sibling -= 1
            }
            sibling = child
            while sibling < lines.count, indentation(lines[sibling]) >= indent || lines[sibling].trimmingCharacters(in: .whitespaces).isEmpty {
                if indentation(lines[sibling]) == indent, key(lines[sibling]) == "set-name" { removed.append(sibling) }
                sibling += 1
            }
        }
        let edits = Set(removed).sorted().map { TextEdit(line: $0 + 1, before: lines[$0], after: "") }
        for index in Set(removed).sorted(by: >) { lines.remove(at: index) }
        return Result(rewrite: TextRewriteResult(text: lines.joined(separator: "\n"), edits: edits),
                      interfaceNames: unique(names.filter { !$0.isEmpty }))
    }

    /// The `.link` file that gives the virtio NIC the name the old configuration uses.
    static func virtioLinkFile(naming name: String) -> String {
        """
        # Written by hyper2kvm: the guest's network configuration names its NIC "\(name)"
        # (the name it had on the old hypervisor). This gives the virtio NIC that name, so the
        # configuration applies unchanged. Delete this file to get the predictable name back.
        [Match]
        Driver=virtio_net

        [Link]
        Name=\(name)

        """
    }

    /// The single interface name to give the virtio NIC, or nil with a reason.
    static func nameToPreserve(_ names: [String]) -> (name: String?, reason: String?) {
        let candidates = unique(names.filter { $0 != "lo" })
        switch candidates.count {
        case 0: return (nil, "no interface name found in the network configuration")
        case 1: return (candidates[0], nil)
        default:
            return (nil, "the network configuration names several interfaces (\(candidates.joined(separator: ", "))); "
                + "which virtio NIC replaces which cannot be known, so no name was pinned")
        }
    }

    // MARK: - Application

    /// Config locations, by format.
    static let locations: [(pattern: String, format: String)] = [
        ("/etc/network/interfaces", "ifupdown"),
        ("/etc/network/interfaces.d/*", "ifupdown"),
        ("/etc/sysconfig/network-scripts/ifcfg-*", "ifcfg"),
        ("/etc/sysconfig/network/ifcfg-*", "ifcfg"),
        ("/etc/netplan/*.yaml", "netplan"),
        ("/etc/NetworkManager/system-connections/*", "networkmanager"),
        ("/etc/systemd/network/*.network", "networkd"),
        ("/etc/systemd/network/*.link", "link"),
    ]

    static let persistentNetRules = "/etc/udev/rules.d/70-persistent-net.rules"

    func apply(guest: GuestfsHandle, editor: GuestFileEditor) throws -> [SkippedGuestFix] {
        var names: [String] = []
        for (pattern, format) in Self.locations {
            for path in try editor.files(matching: pattern) where path != Self.linkFilePath {
                guard let text = try editor.read(path) else { continue }
                let result: Result = switch format {
                case "ifupdown": Self.ifupdown(text)
                case "ifcfg": Self.ifcfg(text, path: path)
                case "netplan": Self.netplan(text)
                case "networkmanager": Self.networkManager(text)
                case "networkd": Self.systemdNetwork(text, isLinkFile: false)
                default: Self.systemdNetwork(text, isLinkFile: true)
                }
                names += result.interfaceNames
                if result.rewrite.changed {
                    try editor.replace(path, area: "network", with: result.rewrite.text, edits: result.rewrite.edits)
                }
            }
        }
        // Old udev rules bind names to the VMware MAC; on the new NIC they would only get in the way.
        try editor.remove(Self.persistentNetRules, area: "network")

        let (name, reason) = Self.nameToPreserve(names)
        guard let name else {
            return [SkippedGuestFix(area: "network", reason: "interface name not pinned to the virtio NIC: \(reason ?? "")")]
        }
        try editor.create(Self.linkFilePath, area: "network", content: Self.virtioLinkFile(naming: name))
        return []
    }

    // MARK: - Helpers

    private static func commentOutLines(_ text: String, where shouldComment: ([String]) -> Bool) -> TextRewriteResult {
        var lines = text.components(separatedBy: "\n")
        var edits: [TextEdit] = []
        for index in lines.indices {
            let line = lines[index]
            let fields = TableLine.fieldRanges(line).map { String(line[$0]) }
            guard let first = fields.first, !first.hasPrefix("#"), shouldComment(fields) else { continue }
            let indent = line.prefix { $0 == " " || $0 == "\t" }
            lines[index] = indent + "# " + line.dropFirst(indent.count) + "  # removed by hyper2kvm (MAC of the old hypervisor)"
            edits.append(TextEdit(line: index + 1, before: line, after: lines[index]))
        }
        return TextRewriteResult(text: lines.joined(separator: "\n"), edits: edits)
    }

    private static func unquoted(_ value: String) -> String {
        value.trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
    }

    private static func unique(_ values: [String]) -> [String] {
        var seen: Set<String> = []
        return values.filter { seen.insert($0).inserted }
    }
}
