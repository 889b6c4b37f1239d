import Stages

/// Removes what the old hypervisor left behind that gets in the way on KVM: device caches
/// that name the old disks (always) and VMware's guest tools (when `remove_vmware_tools`).
struct HypervisorLeftoversRemover: Sendable {
    /// Caches keyed by the old devices. RHEL 9's LVM ignores every PV not listed in
    /// system.devices, so a guest keeping it would not find its volume group on virtio.
    static let deviceCaches = [
        "/etc/lvm/devices/system.devices", "/etc/lvm/cache/.cache", "/etc/blkid.tab", "/etc/blkid/blkid.tab",
    ]

    /// Packages of VMware's guest tools, by package format.
    static let vmwareToolsPackages = ["open-vm-tools-desktop", "open-vm-tools-sdmp", "open-vm-tools"]

    var removeVMwareTools: Bool

    init(removeVMwareTools: Bool) {
        self.removeVMwareTools = removeVMwareTools
    }

    /// The dpkg/rpm removal command for the installed tool packages, or nil when none is installed.
    static func removalCommand(packageFormat: String, installed: [String]) -> [String]? {
        guard !installed.isEmpty else { return nil }
        switch packageFormat {
        case "deb": return ["dpkg", "--purge"] + installed
        case "rpm": return ["rpm", "-e", "--nodeps"] + installed
        default: return nil
        }
    }

    /// Returns warnings: a failed tools removal does not fail the job (the tools only idle on
    /// KVM), as in virt-v2v.
    func apply(guest: GuestfsHandle, editor: GuestFileEditor, inspection: GuestInspection) throws -> [String] {
        for cache in Self.deviceCaches {
            try editor.remove(cache, area: "caches")
        }
        guard removeVMwareTools else { return [] }
        let installed: [String]
        switch inspection.packageFormat {
        case "deb":
            installed = try Self.vmwareToolsPackages.filter { try guest.exists("/var/lib/dpkg/info/\($0).list") }
        case "rpm":
            // Without an rpm query we go by the daemon binary; rpm -e names the package.
            installed = try guest.exists("/usr/bin/vmtoolsd") ? ["open-vm-tools"] : []
        default:
            return ["remove_vmware_tools: package format '\(inspection.packageFormat)' is not handled; VMware tools left installed"]
        }
        guard let command = Self.removalCommand(packageFormat: inspection.packageFormat, installed: installed) else { return [] }
        do {
            try guest.command(command)
            editor.record(GuestFixChange(area: "vmware-tools", file: "(packages)", before: installed.joined(separator: " "),
                                         after: "removed with \(command.joined(separator: " "))"))
            return []
        } catch let error as StageError {
            return ["remove_vmware_tools: \(command.joined(separator: " ")) failed, tools left installed: \(error.message)"]
        }
    }
}
