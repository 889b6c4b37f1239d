/// VMware Tools on a Windows guest moving to KVM: its services and drivers are disabled
/// offline (Start 4) so they do not start on hardware they do not know, and its uninstaller
/// is staged for the first boot (MSI removal cannot run offline).
enum VMwareToolsRemoval {
    /// Services and drivers VMware Tools installs.
    static let services = [
        "VMTools", "VGAuthService", "vm3dservice", "VMUSBArbService", "vmci", "vsock", "vmhgfs", "VMMemCtl",
        "vm3dmp", "vm3dmp_loader", "vm3dmp-debug", "vm3dmp-stats", "vmmouse", "vmusbmouse", "vmrawdsk", "vmvss",
        "vsepflt", "vnetWFP", "vmx_svga", "vmxnet3ndis6",
    ]

    /// Disables the VMware services present in `controlSet`; a disabled driver listed as a
    /// class upper/lower filter (vmmouse under the mouse class) is also taken out of that list,
    /// because a device whose filter cannot load does not start at all.
    /// Returns the service names disabled.
    static func disableServices(controlSet: String, in editor: WindowsRegistryEditor) throws -> [String] {
        let servicesKey = "\(controlSet)\\Services"
        let present = try editor.subkeys(servicesKey)
        let wanted = Set(services.map { $0.lowercased() })
        let found = present.filter { wanted.contains($0.lowercased()) }
        for service in found {
            try editor.set("\(servicesKey)\\\(service)", "Start", .dword(4))
        }
        guard !found.isEmpty else { return [] }
        let disabled = Set(found.map { $0.lowercased() })
        let classes = "\(controlSet)\\Control\\Class"
        for deviceClass in try editor.subkeys(classes) {
            for filterValue in ["UpperFilters", "LowerFilters"] {
                guard case .multiString(let filters)? = try editor.value("\(classes)\\\(deviceClass)", filterValue) else { continue }
                let kept = filters.filter { !disabled.contains($0.lowercased()) }
                if kept != filters {
                    try editor.set("\(classes)\\\(deviceClass)", filterValue, .multiString(kept))
                }
            }
        }
        return found
    }

    /// The commands that uninstall VMware Tools, from its Uninstall entries in the SOFTWARE
    /// hive: an MSI product becomes a quiet `msiexec /x`, anything else runs as registered.
    static func uninstallCommands(in editor: WindowsRegistryEditor) throws -> [String] {
        var commands: [String] = []
        for uninstall in ["Microsoft\\Windows\\CurrentVersion\\Uninstall", "WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall"] {
            for product in try editor.subkeys(uninstall) {
                let key = "\(uninstall)\\\(product)"
                guard let name = try editor.value(key, "DisplayName")?.text, name.localizedCaseInsensitiveContains("VMware Tools") else { continue }
                let registered = try editor.value(key, "UninstallString")?.text ?? ""
                if let code = msiProductCode(product) ?? msiProductCode(fromCommand: registered) {
                    commands.append("msiexec.exe /x \(code) /qn /norestart REBOOT=ReallySuppress")
                } else if !registered.isEmpty {
                    commands.append(registered)
                }
            }
        }
        return Array(uniqueIgnoringCase(commands))
    }

    /// `{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}` when `text` is one.
    static func msiProductCode(_ text: String) -> String? {
        let hex = Set("0123456789abcdefABCDEF")
        let parts = text.dropFirst().dropLast().split(separator: "-", omittingEmptySubsequences: false)
        guard text.hasPrefix("{"), text.hasSuffix("}"), parts.map(\.count) == [8, 4, 4, 4, 12],
              parts.allSatisfy({ $0.allSatisfy(hex.contains) }) else { return nil }
        return text
    }

    /// The product code in `MsiExec.exe /I{…}` or `/X{…}`.
    static func msiProductCode(fromCommand command: String) -> String? {
        guard command.lowercased().contains("msiexec"), let open = command.firstIndex(of: "{"),
              let close = command[open...].firstIndex(of: "}") else { return nil }
        return msiProductCode(String(command[open...close]))
    }
}

/// Keeps the first occurrence of each element, in order.
private func uniqueIgnoringCase(_ items: [String]) -> [String] {
    var seen: Set<String> = []
    return items.filter { seen.insert($0.lowercased()).inserted }
}
