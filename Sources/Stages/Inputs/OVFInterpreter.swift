/// Turns the element tree into an `OVFDescriptor`.
struct OVFInterpreter {
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
        let (dialect, dialectNote) = try OVFDialect.of(envelope: root, file: file)
        var notes = dialectNote.map { [$0] } ?? []
        notes += try OVFSectionPolicy.check(childrenOf: root, file: file)
        let files = try fileReferences()
        let diskSection = root.descendants("DiskSection").first
        // By ovf:diskId, the first of each: looked up once per disk item, never searched.
        let diskEntries = Dictionary((diskSection?.all("Disk") ?? []).compactMap { entry in entry.attributes["diskId"].map { ($0, entry) } },
                                     uniquingKeysWith: { first, _ in first })

        let system = try virtualSystem(notes: &notes)
        notes += try OVFSectionPolicy.check(childrenOf: system, file: file)
        let name = system.childText("Name").flatMap { $0.isEmpty ? nil : $0 } ?? system.attributes["id"] ?? ""
        guard !name.isEmpty else {
            throw StageError(.badInput, file: file, "OVF VirtualSystem has neither a Name nor an ovf:id")
        }

        let hardwareSections = system.all("VirtualHardwareSection")
        let hardware = hardwareSections.first
        if hardwareSections.count > 1 {
            notes.append("the OVF has \(hardwareSections.count) VirtualHardwareSections: the first is read")
        }
        let configuration = OVFDeploymentOption.choose(in: root.child("DeploymentOptionSection"))
        if let note = configuration.note { notes.append(note) }
        let items = hardwareItems(hardware, configuration: configuration.id)
        let vcpus = items.first { $0.resourceType == ResourceType.processor.rawValue }
            .flatMap { Int($0.node.childText("VirtualQuantity") ?? "") }
        let memoryMiB = try items.first { $0.resourceType == ResourceType.memory.rawValue }.map(memoryMiB)

        let disks = try orderedDisks(items: items, diskEntries: diskEntries, files: files)
        let nics = networkInterfaces(items: items, system: system)
        let os = system.child("OperatingSystemSection")
        let osHint = os?.childText("Description").flatMap { $0.isEmpty ? nil : $0 } ?? os?.attributes["osType"]

        let vmware = OVFVMwareExtensions(system: system, hardware: hardware)
        notes += vmware.firmwareNotes()
        let (bootDisk, bootNote) = vmware.bootDisk(diskItemIDs: disks.map(\.itemInstanceID))
        if let bootNote { notes.append(bootNote) }
        let hrefsByID = files.mapValues(\.href)
        let nvram = vmware.nvramFile(references: hrefsByID)
        if let nvram {
            notes.append("NVRAM file '\(nvram.prefix(100))' (the source's UEFI variables) is listed: recorded, not carried over; "
                             + "the guest starts with OVMF's own variables")
        }
        let unused = Set(files.values.map(\.href)).subtracting(disks.map(\.href)).subtracting([nvram].compactMap { $0 }).sorted()
        if !unused.isEmpty {
            let listed = unused.prefix(8).map { "'\($0.prefix(100))'" }.joined(separator: ", ")
            notes.append("files in References that are not disks of the VM (CD-ROM images, configuration files…), not converted: \(listed)"
                             + (unused.count > 8 ? " and \(unused.count - 8) more" : ""))
        }
        return OVFDescriptor(name: name, vcpus: vcpus, memoryMiB: memoryMiB, firmware: vmware.firmware(),
                             disks: disks, nics: nics, osHint: osHint, referencedFiles: files.values.map(\.href).sorted(),
                             bootDiskIndex: bootDisk ?? 0, dialect: dialect, notes: notes)
    }

    /// The one VM. A `VirtualSystemCollection` (a vApp) of one VM is read as that VM; of
    /// several, it is refused: one job converts one source file into one guest and publishes
    /// it atomically, and a queue file that became N jobs would have no single outcome (which
    /// of `.processed/` or `.errors/` does it go to when one VM of three fails?). Each VM
    /// exported on its own converts.
    private func virtualSystem(notes: inout [String]) throws -> OVFXMLNode {
        let systems = root.descendants("VirtualSystem")
        let collections = root.descendants("VirtualSystemCollection")
        guard let system = systems.first else {
            if !collections.isEmpty {
                throw StageError(.badInput, file: file, "OVF VirtualSystemCollection holds no VirtualSystem")
            }
            throw StageError(.badInput, file: file, "OVF descriptor has no VirtualSystem")
        }
        if systems.count > 1 {
            let names = systems.prefix(8).map { node in
                String((node.childText("Name").flatMap { $0.isEmpty ? nil : $0 } ?? node.attributes["id"] ?? "?").prefix(64))
            }
            let listed = names.joined(separator: ", ") + (systems.count > 8 ? " and \(systems.count - 8) more" : "")
            let holder = collections.isEmpty ? "OVF describes" : "OVF VirtualSystemCollection (vApp) holds"
            throw StageError(.badInput, file: file,
                             "\(holder) \(systems.count) virtual machines (\(listed)); a job converts one VM: export each VM "
                                 + "as its own OVF or OVA (vSphere: Export OVF Template on the VM, not the vApp) and queue those")
        }
        if let collection = collections.first {
            notes.append("VirtualSystemCollection '\(String((collection.attributes["id"] ?? "").prefix(64)))' holds one VM: it is converted")
            notes += try OVFSectionPolicy.check(childrenOf: collection, file: file)
        }
        return system
    }

    private struct FileReference {
        var href: String
        var size: UInt64?
        var compression: String?
        var chunkSize: UInt64?
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
                                      compression: node.attributes["compression"],
                                      chunkSize: node.attributes["chunkSize"].flatMap { UInt64($0) })
        }
        return files
    }

    /// `Item` (rasd, OVF 1.x and 2.x), `StorageItem` (sasd) and `EthernetPortItem` (epasd), as
    /// they apply to the chosen deployment option: an item with `ovf:configuration` counts only
    /// when it lists that option, and then replaces the item of the same `InstanceID` that has
    /// none (how appliances say "1 CPU, but 4 in the large profile"); `ovf:bound="min"`/`"max"`
    /// items (ranges) never count.
    private func hardwareItems(_ hardware: OVFXMLNode?, configuration: String?) -> [HardwareItem] {
        guard let hardware else { return [] }
        var items: [HardwareItem] = []
        // InstanceID → where the first item of that ID is kept, and whether it is configuration-specific
        // (a dictionary, not a search: a hostile OVF may repeat one ID 100,000 times).
        var kept: [String: (index: Int, specific: Bool)] = [:]
        for node in hardware.children {
            guard ["Item", "StorageItem", "EthernetPortItem"].contains(node.name),
                  let type = Int(node.childText("ResourceType") ?? "") else { continue }
            if let bound = node.attributes["bound"]?.lowercased(), bound != "normal" { continue }
            let listed = node.attributes["configuration"]
            if let configuration, let listed, !listed.split(separator: " ").contains(Substring(configuration)) {
                continue
            }
            // OVF 0.9 spells it InstanceId.
            let instanceID = node.childText("InstanceID") ?? node.childText("InstanceId") ?? ""
            let item = HardwareItem(instanceID: instanceID, resourceType: type, node: node)
            let specific = listed != nil
            if !instanceID.isEmpty, let earlier = kept[instanceID] {
                if specific && !earlier.specific {
                    items[earlier.index] = item
                    kept[instanceID] = (earlier.index, true)
                } else if specific == earlier.specific {
                    items.append(item)  // two of a kind: both kept, in document order, as before
                }
                continue
            }
            if !instanceID.isEmpty { kept[instanceID] = (items.count, specific) }
            items.append(item)
        }
        return items
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
    private func orderedDisks(items: [HardwareItem], diskEntries: [String: OVFXMLNode],
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
            var disk = try disk(forHostResource: resource, diskEntries: diskEntries, files: files)
            disk.itemInstanceID = item.instanceID.isEmpty ? nil : item.instanceID
            disks.append(disk)
        }
        return disks
    }

    private func disk(forHostResource resource: String, diskEntries: [String: OVFXMLNode],
                      files: [String: FileReference]) throws -> OVFDescriptor.Disk {
        let path = resource.hasPrefix("ovf:") ? String(resource.dropFirst(4)) : resource
        if path.hasPrefix("/disk/") {
            let id = String(path.dropFirst("/disk/".count))
            guard let entry = diskEntries[id] else {
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
                                      formatURI: entry.attributes["format"], compression: reference.compression,
                                      chunkSize: reference.chunkSize)
        }
        if path.hasPrefix("/file/") {
            let id = String(path.dropFirst("/file/".count))
            guard let reference = files[id] else {
                throw StageError(.badInput, file: file, "OVF disk item refers to '\(resource)', which References does not list")
            }
            return OVFDescriptor.Disk(diskID: id, href: reference.href, fileSize: reference.size, capacityBytes: nil,
                                      formatURI: nil, compression: reference.compression, chunkSize: reference.chunkSize)
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
}

/// Which `ovf:configuration` of a `DeploymentOptionSection` the VM is read as: the one marked
/// `ovf:default="true"`, else the first (DSP0243: the first is the default when none is
/// marked). A converted VM is the one the exporter would deploy without being asked.
enum OVFDeploymentOption {
    static func choose(in section: OVFXMLNode?) -> (id: String?, note: String?) {
        let options = (section?.all("Configuration") ?? []).filter { $0.attributes["id"] != nil }
        guard let first = options.first, let firstID = first.attributes["id"] else { return (nil, nil) }
        let marked = options.first { $0.attributes["default"]?.lowercased() == "true" }
        let chosen = marked?.attributes["id"] ?? firstID
        let how = marked == nil ? "the first, none is marked default" : "the default"
        return (chosen, "deployment option '\(chosen.prefix(64))' read (\(how), of \(options.count))")
    }
}

extension OVFDescriptor {
    /// Bytes per OVF allocation unit ("byte * 2^20", "MegaBytes"…), nil when not understood.
    static func bytesPerUnit(_ units: String) -> UInt64? {
        OVFInterpreter.bytes(perUnit: units)
    }
}
