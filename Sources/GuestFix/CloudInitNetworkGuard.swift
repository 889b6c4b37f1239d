import Foundation
import Stages

/// Keeps cloud-init from writing over the network configuration it generated on the old
/// hypervisor. cloud-init renders its network config once per instance, to
/// `/etc/netplan/50-cloud-init.yaml` (Ubuntu), `/etc/network/interfaces.d/50-cloud-init`
/// (Debian), `cloud-init-*.nmconnection` or ifcfg files it marks as its own (RHEL). On the
/// new hypervisor the datasource differs (none, or a NoCloud/OpenStack one) and so may the
/// instance id; cloud-init then renders again, from the new datasource or its fallback
/// (DHCP on the first NIC), and the static address the guest had is gone: the field's most
/// reported migration failure. cloud-init's own documented switch,
/// `network: {config: disabled}` in `/etc/cloud/cloud.cfg.d/`, keeps the files we adapted
/// to virtio. It is written only when cloud-init is installed, a file it rendered exists
/// and nothing disables its network config already; deleting the guard hands the network
/// back to cloud-init.
struct CloudInitNetworkGuard: Sendable {
    /// Where cloud-init's renderers write (ifcfg files are cloud-init's only with its header).
    static let renderedFiles = ["/etc/netplan/50-cloud-init.yaml", "/etc/network/interfaces.d/50-cloud-init*",
                                "/etc/NetworkManager/system-connections/cloud-init-*"]
    static let renderedIfcfg = "/etc/sysconfig/network-scripts/ifcfg-*"
    static let renderedIfcfgMark = "Created by cloud-init"
    static let guardFile = "/etc/cloud/cloud.cfg.d/99-hyper2kvm-disable-network-config.cfg"
    static let configFiles = ["/etc/cloud/cloud.cfg", "/etc/cloud/cloud.cfg.d/*.cfg"]

    static let content = """
        # Written by hyper2kvm: cloud-init generated this guest's network configuration on
        # the old hypervisor, and hyper2kvm adapted it to the virtio NIC. On the new
        # hypervisor cloud-init may render its network configuration again (another
        # datasource, a new instance id), or fall back to DHCP on the first NIC, losing the
        # address this guest had.
        # Delete this file to let cloud-init manage the network again.
        network: {config: disabled}

        """

    /// Whether one cloud-init config file already turns its network configuration off,
    /// in the flow form (`network: {config: disabled}`) or the block form.
    static func disablesNetwork(_ text: String) -> Bool {
        let lines = text.components(separatedBy: "\n").map { line in
            String(line.prefix { $0 != "#" }).trimmingCharacters(in: .whitespaces)
        }
        let compact = lines.joined(separator: "\n").replacingOccurrences(of: " ", with: "").replacingOccurrences(of: "\t", with: "")
        if compact.contains("network:{config:disabled}") || compact.contains("network:{\"config\":\"disabled\"}") { return true }
        for (index, line) in lines.enumerated() where line.replacingOccurrences(of: " ", with: "") == "network:" {
            for next in lines.dropFirst(index + 1) where !next.isEmpty {
                return next.replacingOccurrences(of: " ", with: "").replacingOccurrences(of: "\"", with: "") == "config:disabled"
            }
        }
        return false
    }

    /// Whether to write the guard; when not, why.
    static func decide(cloudInitInstalled: Bool, rendered: [String], configs: [String]) -> (write: Bool, reason: String) {
        guard !rendered.isEmpty else { return (false, "no network configuration rendered by cloud-init") }
        guard cloudInitInstalled else { return (false, "cloud-init is not installed (\(configFiles[0]) absent)") }
        if configs.contains(where: disablesNetwork) { return (false, "cloud-init's network configuration is already disabled") }
        return (true, "")
    }

    func apply(editor: GuestFileEditor) throws -> [SkippedGuestFix] {
        var rendered: [String] = []
        for pattern in Self.renderedFiles { rendered += try editor.files(matching: pattern) }
        for path in try editor.files(matching: Self.renderedIfcfg) where try editor.read(path)?.contains(Self.renderedIfcfgMark) == true {
            rendered.append(path)
        }
        let main = try editor.read(Self.configFiles[0])
        var configs = main.map { [$0] } ?? []
        for path in try editor.files(matching: Self.configFiles[1]) {
            if let text = try editor.read(path) { configs.append(text) }
        }
        let decision = Self.decide(cloudInitInstalled: main != nil, rendered: rendered, configs: configs)
        guard decision.write else {
            // Only worth a note when cloud-init is in play at all.
            return !rendered.isEmpty || main != nil
                ? [SkippedGuestFix(area: "network", reason: "cloud-init network guard not written: \(decision.reason)")] : []
        }
        try editor.create(Self.guardFile, area: "network", content: Self.content)
        return []
    }
}
