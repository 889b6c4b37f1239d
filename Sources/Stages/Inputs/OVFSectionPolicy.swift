/// Which sections of an OVF we read, which we know and pass over, and what happens to the rest.
///
/// OVF lets an exporter add sections of its own and mark with `ovf:required="true"` those an
/// importer must understand to deploy the VM correctly. The rule here:
///
/// - a section we read, or a standard one that does not bear on conversion (licence text,
///   vApp properties, start-up order…), passes without comment;
/// - EncryptionSection (OVF 2.0) is refused: its files are encrypted and would convert to noise;
/// - any other child of `Envelope`, `VirtualSystem` or `VirtualSystemCollection` is an unknown
///   section: with `ovf:required="true"` it is refused, naming it (we would otherwise deploy
///   something its author said must not be deployed without it); otherwise it is ignored and a
///   note names it. A section without the attribute counts as not required: exporters write
///   their extensions that way (vSphere's `vmw:BootOrderSection`, VirtualBox's `vbox:Machine`
///   carry none or `"false"`) and ovftool and VirtualBox import them alike.
enum OVFSectionPolicy {
    /// Read by the interpreter (wholly or in part).
    static let read: Set<String> = [
        "References", "DiskSection", "NetworkSection", "DeploymentOptionSection", "VirtualSystem",
        "VirtualSystemCollection", "OperatingSystemSection", "VirtualHardwareSection",
        "BootOrderSection",  // vmw: boot device order
        "Machine",  // vbox: VirtualBox's own settings (firmware, adapter MACs)
        "Info", "Name",
    ]

    /// Standard (DMTF) or well-known vendor sections that describe nothing the converted guest needs.
    static let passedOver: Set<String> = [
        "AnnotationSection", "ProductSection", "EulaSection", "StartupSection", "InstallSection",
        "ResourceAllocationSection", "PropertySection", "Strings", "EnvironmentFilesSection",
        "BootDeviceSection", "ScaleOutSection", "PlacementGroupSection", "PlacementSection",
        "SharedDiskSection",
        // VMware: storage policies, vService bindings, IP allocation of vApp properties.
        "StorageSection", "StorageGroupSection", "vServiceDependencySection", "IpAssignmentSection",
    ]

    /// Understood well enough to know we cannot convert what they describe.
    static let refused: [String: String] = [
        "EncryptionSection": "its files are encrypted (OVF 2.0 EncryptionSection), which is not supported",
    ]

    /// Checks the children of one container; returns the notes for what was ignored.
    static func check(childrenOf container: OVFXMLNode, file: String) throws -> [String] {
        var ignored: [String] = []
        for child in container.children where !read.contains(child.name) && !passedOver.contains(child.name) {
            let shown = String(child.qualifiedName.prefix(80))
            if let reason = refused[child.name] {
                throw StageError(.badInput, file: file, "OVF section \(shown) refused: \(reason)")
            }
            if child.attributes["required"]?.lowercased() == "true" {
                throw StageError(.badInput, file: file,
                                 "OVF section \(shown) in \(container.qualifiedName) is marked ovf:required=\"true\" "
                                     + "and is not one this converter understands; refused rather than converted without it")
            }
            ignored.append(shown)
        }
        guard !ignored.isEmpty else { return [] }
        let listed = ignored.prefix(8).joined(separator: ", ") + (ignored.count > 8 ? " and \(ignored.count - 8) more" : "")
        return ["OVF sections not understood and ignored (not marked required) in \(container.qualifiedName): \(listed)"]
    }
}
