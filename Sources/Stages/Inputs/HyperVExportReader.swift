import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Reads a Hyper-V export folder (what Export-VM or Hyper-V Manager's Export writes):
///
///     <VM>/Virtual Hard Disks/*.vhdx, *.avhdx   disks and checkpoint (differencing) files
///     <VM>/Virtual Machines/<GUID>.vmcx (.vmrs, .vmgs)   settings, runtime and guest state
///     <VM>/Snapshots/…                               checkpoint settings
///
/// `.vmcx` is a binary format Microsoft does not document, so it is not read: its presence is
/// recorded in the facts, and the VM's settings come from names and defaults. The name is the
/// folder's; the disks are the newest files of `Virtual Hard Disks` (each file that is no other
/// file's parent, whatever its extension: the content says whether it has a parent), ordered
/// by the file name of their base; vCPUs and memory are left to the defaults (`vm_vcpus`,
/// `vm_memory`); no NICs are known. Firmware comes from the first disk's partition table: a
/// GPT with an EFI System Partition is a generation 2 (UEFI) VM.
///
/// A disk with checkpoints is flattened (`VHDXFlattener`) into the job's directory as
/// `hyperv-<name>.raw`, and that file is the disk the job converts. Two newest files sharing an
/// ancestor (a checkpoint tree that branches: an older checkpoint was applied) are refused:
/// which branch is the VM's current state only the `.vmcx` says.
public enum HyperVExportReader {
    static let disksDirectory = "Virtual Hard Disks"
    static let settingsDirectory = "Virtual Machines"
    static let diskExtensions: Set<String> = ["vhdx", "avhdx"]

    /// True when `directory` has the shape of a Hyper-V export (a `Virtual Hard Disks` folder).
    public static func looksLikeExport(_ directory: URL) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: directory.appendingPathComponent(disksDirectory).path, isDirectory: &isDirectory)
            && isDirectory.boolValue
    }

    public static func read(_ folder: URL, scratchDirectory: URL, qemuImg: String = "qemu-img") async throws -> SourceReading {
        let root = folder.standardizedFileURL.path
        let disksPath = root + "/" + disksDirectory
        var facts: [String] = []
        let settings = (try? FileManager.default.contentsOfDirectory(atPath: root + "/" + settingsDirectory))?.sorted() ?? []
        let vmcx = settings.filter { $0.lowercased().hasSuffix(".vmcx") }
        facts.append(vmcx.isEmpty
            ? "no .vmcx settings file in \(settingsDirectory): VM settings from the folder name and defaults"
            : "settings file \(vmcx.joined(separator: ", ")) not read (binary format without public specification): name from the folder, disks from \(disksDirectory), vCPUs and memory from the defaults")
        let state = settings.filter { !$0.lowercased().hasSuffix(".vmcx") }
        if !state.isEmpty {
            facts.append("not read (runtime and guest state, not needed to convert): " + state.prefix(8).joined(separator: ", ")
                             + (state.count > 8 ? " and \(state.count - 8) more" : ""))
        }
        let others = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted()
            .filter { ![disksDirectory, settingsDirectory].contains($0) }
        if !others.isEmpty {
            facts.append("not read (checkpoint settings and other files of the export): " + others.prefix(8).joined(separator: ", ")
                             + (others.count > 8 ? " and \(others.count - 8) more" : ""))
        }
        let names = try diskNames(in: disksPath, facts: &facts)
        guard !names.isEmpty else {
            throw StageError(.badInput, file: root, "Hyper-V export holds no .vhdx or .avhdx file in \(disksDirectory)")
        }

        // Every file's chain; the newest files are those that are no other file's ancestor.
        var chains: [VHDXChain] = []
        for name in names {
            chains.append(try VHDXChain.resolve(top: disksPath + "/" + name, root: root))
        }
        let ancestors = chains.flatMap { $0.links.dropLast().map(\.path) }
        let leaves = chains.filter { chain in !ancestors.contains(chain.links[chain.links.count - 1].path) }
        try refuseBranches(leaves)

        var disks: [SourceDisk] = []
        var firmware = Firmware.unknown
        for (index, chain) in leaves.sorted(by: { $0.base.path < $1.base.path }).enumerated() {
            let top = chain.links[chain.links.count - 1]
            let locator: DiskLocator
            let leading: Data
            if chain.links.count == 1 {
                locator = DiskLocator(path: top.path, format: "vhdx")
                leading = try VHDXBlockTable(layout: top.layout, reader: try top.file.reader()).leadingBytes(1 << 20)
            } else {
                try FileManager.default.createDirectory(at: scratchDirectory, withIntermediateDirectories: true)
                let stem = URL(fileURLWithPath: chain.base.path).deletingPathExtension().lastPathComponent
                let target = scratchDirectory.appendingPathComponent("hyperv-\(index)-\(safeName(stem)).raw")
                try await VHDXFlattener.flatten(chain, into: target, qemuImg: qemuImg)
                locator = DiskLocator(path: target.path, format: "raw")
                leading = try ByteRangeReader(path: target.path).read(at: 0, count: 1 << 20)
                facts.append("disk\(index): checkpoint chain " + chain.links.map { URL(fileURLWithPath: $0.path).lastPathComponent }.joined(separator: " ← ")
                                 + " flattened to \(target.lastPathComponent) in the job directory")
            }
            if index == 0 {
                firmware = PartitionTableFirmware.firmware(leadingBytes: leading, sectorSize: Int(top.layout.logicalSectorSize))
                facts.append("firmware \(firmware.rawValue), from the partition table of the first disk (\(firmware == .uefi ? "GPT with an EFI System Partition: generation 2" : firmware == .bios ? "MBR or BIOS boot partition: generation 1" : "not recognised"))")
            }
            disks.append(SourceDisk(id: "disk\(index)", locator: locator, bootOrderHint: index))
        }
        let name = folder.lastPathComponent
        return SourceReading(description: VMDescription(name: name, firmware: firmware, disks: disks, origin: "hyperv"), facts: facts)
    }

    /// The `.vhdx`/`.avhdx` names in `Virtual Hard Disks`, sorted; anything else there is
    /// named in the facts.
    private static func diskNames(in directory: String, facts: inout [String]) throws -> [String] {
        let entries: [String]
        do {
            entries = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        } catch {
            throw StageError(.badInput, file: directory, "cannot list the folder: \(error.localizedDescription)")
        }
        let disks = entries.filter { diskExtensions.contains(URL(fileURLWithPath: $0).pathExtension.lowercased()) }
        let others = entries.filter { !disks.contains($0) }
        if !others.isEmpty {
            facts.append("not disks, not converted, in \(disksDirectory): " + others.prefix(8).joined(separator: ", ")
                             + (others.count > 8 ? " and \(others.count - 8) more" : ""))
        }
        return disks
    }

    /// `stem` reduced to letters, digits, `-`, `_` and `.` (the work file's name is ours).
    static func safeName(_ stem: String) -> String {
        let kept = String(stem.prefix(64).map { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) ? $0 : "_" })
        return kept.isEmpty ? "disk" : kept
    }

    private static func refuseBranches(_ leaves: [VHDXChain]) throws {
        var owner: [String: String] = [:]
        for chain in leaves {
            let top = chain.links[chain.links.count - 1].path
            for link in chain.links.dropLast() {
                if let other = owner[link.path] {
                    throw StageError(.badInput, file: top,
                                     "checkpoint tree branches: \(top) and \(other) both descend from \(link.path); which one is the VM's current state only the .vmcx says. Delete the unused checkpoint subtree in Hyper-V (or merge it with Merge-VHD) and export again")
                }
                owner[link.path] = top
            }
        }
    }
}
