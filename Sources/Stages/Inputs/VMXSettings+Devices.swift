import Foundation

extension VMXSettings {
    /// Device types that are a virtual disk backed by a file (VMware writes none for a plain disk).
    static let diskDeviceTypes: Set<String> = ["disk", "scsi-harddisk", "ata-harddisk", "nvme-harddisk", "sata-harddisk"]

    /// Reads the storage devices in disk order (see the type's documentation).
    mutating func readDevices(_ vmx: VMXFile, file: String) throws {
        try refuseDevicesOutOfRange(vmx, file: file)
        for controller in Self.controllers {
            for bus in 0..<controller.buses {
                let controllerKey = "\(controller.prefix)\(bus)"
                let controllerOff = Self.flag(vmx, controllerKey + ".present") == false
                for unit in 0..<controller.units {
                    let device = "\(controllerKey):\(unit)"
                    let fileName = vmx[device + ".fileName"] ?? ""
                    guard Self.flag(vmx, device + ".present") == true, !controllerOff else {
                        if !fileName.isEmpty {
                            notes.append("\(device) (\(fileName)) is not present\(controllerOff ? " (its controller is off)" : ""): not converted")
                        }
                        continue
                    }
                    let type = vmx[device + ".deviceType"]?.lowercased()
                    if let type, type.contains("cdrom") || type.contains("floppy") {
                        if !fileName.isEmpty, type.hasSuffix("image") {
                            notes.append("\(device) is a CD-ROM image (\(fileName)): not converted")
                            otherFiles.append(fileName)
                        } else {
                            notes.append("\(device) is a CD-ROM drive: not converted")
                        }
                        continue
                    }
                    if let type, !Self.diskDeviceTypes.contains(type) {
                        throw StageError(.badInput, file: file,
                                         "\(device) is a \(String(type.prefix(40)).debugDescription) device: only disks backed by a file are converted (a raw device or pass-through has no file to convert)")
                    }
                    guard !fileName.isEmpty else {
                        throw StageError(.badInput, file: file, "disk \(device) has no fileName")
                    }
                    guard PlainFileName.isPlain(fileName) else {
                        throw StageError(.badInput, file: file,
                                         "disk \(device) is \(String(fileName.prefix(200)).debugDescription), outside the .vmx's folder: only disks beside the .vmx, named by their file name, belong to its job (copy the disk beside it and name it so)")
                    }
                    disks.append(Disk(device: device, fileName: fileName))
                }
            }
        }
        guard !disks.isEmpty else {
            throw StageError(.badInput, file: file, "the .vmx names no disk (no present scsi/sata/nvme/ide device with a fileName)")
        }
    }

    /// A device key whose controller or unit number is beyond what VMware offers is refused, not
    /// skipped: skipping it would drop a disk the owner expects.
    private func refuseDevicesOutOfRange(_ vmx: VMXFile, file: String) throws {
        for key in vmx.keys where key.hasSuffix(".present") || key.hasSuffix(".filename") {
            guard let controller = Self.controllers.first(where: { key.hasPrefix($0.prefix) }) else { continue }
            let numbers = key.dropFirst(controller.prefix.count).prefix { $0 != "." }
            let parts = numbers.split(separator: ":", omittingEmptySubsequences: false)
            guard !parts.isEmpty, parts.count <= 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } })
            else { continue }  // not a device key (`scsi0.virtualDev`-like keys end otherwise)
            // Too many digits for an Int is out of range too.
            let bus = Int(parts[0]) ?? .max
            let unit = parts.count == 2 ? Int(parts[1]) ?? .max : 0
            if bus >= controller.buses || unit >= controller.units {
                throw StageError(.badInput, file: file,
                                 "\(vmx.written(key)) is beyond the \(controller.buses) \(controller.prefix) controllers of \(controller.units) units this reader knows")
            }
        }
    }
}
