import Foundation

/// Reads a `.vmx` whose disks sit beside it (a datastore folder copied off ESXi, Workstation or
/// Fusion). The same rules as an `.ovf` beside its disks: each disk a plain file in the same
/// directory (a missing one refuses the job), files that are not disks named in the facts.
public enum VMXDirectoryReader {
    public static func read(_ vmxURL: URL) throws -> SourceReading {
        let path = vmxURL.path
        let directory = vmxURL.deletingLastPathComponent()
        let reader = try ByteRangeReader(path: path)
        guard reader.size <= UInt64(VMXFile.maximumBytes) else {
            throw StageError(.badInput, file: path, "a .vmx of \(reader.size) bytes is implausibly large (at most \(VMXFile.maximumBytes))")
        }
        let settings = try VMXSettings(try VMXFile.parse(Array(try reader.read(at: 0, count: VMXFile.maximumBytes)), file: path), file: path)
        var facts = ["configuration \(vmxURL.lastPathComponent): VMware .vmx, \(settings.disks.count) disk(s) in order "
            + settings.disks.map { "\($0.device) \($0.fileName)" }.joined(separator: ", ")]
        facts += settings.notes
        for other in settings.otherFiles {
            let present = PlainFileName.isPlain(other) && (try? VMDKDescriptor.plainSibling(named: other, of: vmxURL, in: directory, role: "file")) != nil
            facts.append("\(other) is named by the .vmx and is no disk: \(present ? "not converted" : "absent or outside the folder, not needed")")
        }
        var disks: [SourceDisk] = []
        for (index, disk) in settings.disks.enumerated() {
            let diskURL: URL
            do {
                diskURL = try VMDKDescriptor.plainSibling(named: disk.fileName, of: vmxURL, in: directory, role: "disk")
            } catch let error as StageError where error.message.hasSuffix("is missing") {
                throw StageError(.badInput, file: path, "disk \(disk.device) is '\(disk.fileName)', which is missing from \(directory.path)")
            }
            let format = try OVFDescriptor.diskFormat(of: try ByteRangeReader(path: diskURL.path), file: path, href: disk.fileName)
            disks.append(SourceDisk(id: index == 0 ? "disk0" : OVFDescriptor.safeDiskID(disk.device.replacingOccurrences(of: ":", with: "-"), index: index),
                                    locator: DiskLocator(path: diskURL.path, format: format), bootOrderHint: index))
        }
        let name = settings.name ?? vmxURL.deletingPathExtension().lastPathComponent
        let description = VMDescription(name: name, vcpus: settings.vcpus, memoryMiB: settings.memoryMiB, firmware: settings.firmware,
                                        disks: disks, nics: settings.nics, osHint: settings.guestOS, origin: "vmx")
        return SourceReading(description: description, facts: facts)
    }
}

extension VMXDirectoryReader {
    /// The disk file names a `.vmx` gives (plain names only), for grouping it with its disks in
    /// the queue. Throws when the file cannot be read or parsed (it may still be arriving).
    public static func diskFileNames(of vmxURL: URL) throws -> [String] {
        let reader = try ByteRangeReader(path: vmxURL.path)
        guard reader.size <= UInt64(VMXFile.maximumBytes) else {
            throw StageError(.badInput, file: vmxURL.path, "a .vmx of \(reader.size) bytes is implausibly large")
        }
        let vmx = try VMXFile.parse(Array(try reader.read(at: 0, count: VMXFile.maximumBytes)), file: vmxURL.path)
        return try VMXSettings(vmx, file: vmxURL.path).disks.map(\.fileName)
    }
}
