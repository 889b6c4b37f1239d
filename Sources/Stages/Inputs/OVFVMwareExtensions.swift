/// What vSphere (and VirtualBox) say about firmware and boot beyond the DMTF sections:
///
/// - firmware: `<vmw:Config vmw:key="firmware" vmw:value="efi"/>` (vSphere 5+) or the same key
///   as `<vmw:ExtraConfig>` (the `.vmx` line, in older and hand-made exports); VirtualBox's
///   `<vbox:Machine>…<Firmware type="EFI"/>`;
/// - secure boot: `vmw:Config` `bootOptions.efiSecureBootEnabled`, or `vmw:ExtraConfig`
///   `uefi.secureBoot.enabled`. It implies UEFI. The converted guest boots OVMF without
///   Secure Boot (`DomainXMLWriter` uses the non-secure loader), and a note says so;
/// - NVRAM: vSphere 6.7+ exports the VM's UEFI variable store as a file in References, named by
///   `<vmw:ExtraConfig vmw:key="nvram" vmw:value="ovf:/file/file2"/>` (or a plain name).
///   Recorded, not carried over: the guest starts with OVMF's own variables and finds its
///   boot loader on the EFI system partition by the removable-media path, as after any reset;
/// - boot order: `<vmw:BootOrderSection vmw:instanceId="8" vmw:type="disk">`, one per device in
///   boot order; `instanceId` is the `InstanceID` of the hardware item. The first disk entry
///   chooses the boot disk; a network or CD-ROM first is noted (the guest boots from disk).
struct OVFVMwareExtensions {
    let system: OVFXMLNode
    let hardware: OVFXMLNode?

    /// The value of a `vmw:Config` or `vmw:ExtraConfig` key in the hardware section.
    func config(_ key: String) -> String? {
        let entries = (hardware?.children ?? []).filter { $0.name == "Config" || $0.name == "ExtraConfig" }
        return entries.first { $0.attributes["key"] == key }?.attributes["value"]
    }

    var secureBoot: Bool {
        config("bootOptions.efiSecureBootEnabled")?.lowercased() == "true"
            || config("uefi.secureBoot.enabled")?.lowercased() == "true"
    }

    func firmware() -> Firmware {
        if let value = config("firmware")?.lowercased() {
            return value.hasPrefix("efi") ? .uefi : .bios
        }
        if let type = system.descendants("Firmware").first?.attributes["type"]?.uppercased() {
            return type.hasPrefix("EFI") ? .uefi : .bios
        }
        return secureBoot ? .uefi : .bios
    }

    func firmwareNotes() -> [String] {
        guard secureBoot else { return [] }
        return ["the source VM had UEFI Secure Boot on: the converted guest boots UEFI (OVMF) without Secure Boot"]
    }

    /// The NVRAM file's name, from the `nvram` key (`ovf:/file/<id>` or a name) or a
    /// referenced `.nvram` file.
    func nvramFile(references: [String: String]) -> String? {
        if let value = config("nvram") {
            let path = value.hasPrefix("ovf:") ? String(value.dropFirst(4)) : value
            if path.hasPrefix("/file/") { return references[String(path.dropFirst("/file/".count))] }
            return value
        }
        return references.values.sorted().first { $0.lowercased().hasSuffix(".nvram") }
    }

    /// The index of the boot disk among `diskItemIDs` (the item `InstanceID` of each disk, in
    /// order), and a note on what the boot order said; nil index when it names no disk of ours.
    func bootDisk(diskItemIDs: [String?]) -> (index: Int?, note: String?) {
        let entries = system.all("BootOrderSection")
        guard let first = entries.first else { return (nil, nil) }
        let type = first.attributes["type"]?.lowercased() ?? ""
        let firstDisk = entries.first { $0.attributes["type"]?.lowercased() == "disk" }
        var note: String?
        if type != "disk" {
            note = "the source boots from \(type.isEmpty ? "an unnamed device" : String(type.prefix(20))) first "
                + "(vmw:BootOrderSection); the converted guest boots from its disk"
        }
        guard let firstDisk else { return (nil, note) }
        guard let id = firstDisk.attributes["instanceId"] else { return (0, note) }
        guard let index = diskItemIDs.firstIndex(where: { $0 == id }) else {
            return (nil, (note.map { $0 + "; " } ?? "") + "vmw:BootOrderSection names disk item \(id.prefix(20)), which is not a disk with a file: ignored")
        }
        return (index, note ?? (index == 0 ? nil : "boot disk from vmw:BootOrderSection: disk \(index + 1) in controller order (item \(id.prefix(20)))"))
    }
}
