import Foundation

/// Reads an AMI export: a tar (read in place) or a gzip-compressed tar (decompressed as a
/// stream into the job's scratch directory, then read in place), whose disk payload is the
/// largest member that is a disk image.
public enum AMIReader {
    /// Name of the decompressed archive inside the scratch directory.
    static let decompressedName = "ami-payload.tar"

    public static func read(_ ami: URL, scratchDirectory: URL) async throws -> SourceReading {
        let path = ami.path
        let head = try ByteRangeReader(path: path).read(at: 0, count: 2)
        var facts: [String] = []
        var archive = ami
        if head.hasPrefix([0x1f, 0x8b]) {
            archive = try await decompress(ami, into: scratchDirectory)
            facts.append("AMI is gzip-compressed: decompressed to \(archive.lastPathComponent) in the job directory")
        }

        let members = try TarArchiveReader(url: archive).members().filter { $0.kind == .regularFile && $0.size > 0 }
        var best: (member: TarMember, format: String)?
        for member in members {
            let reader = try ByteRangeReader(path: archive.path, offset: member.dataOffset, length: member.size)
            guard let format = try payloadFormat(reader, name: member.name) else { continue }
            if best.map({ member.size > $0.member.size }) ?? true { best = (member, format) }
        }
        guard let payload = best else {
            throw StageError(.badInput, file: path,
                             "AMI archive holds no disk image (no raw, qcow2, vmdk, vhd or vhdx member among \(members.count) files)")
        }
        facts.append("AMI disk payload: member \(payload.member.name) (\(payload.format), \(payload.member.size) bytes)")
        let locator = DiskLocator(path: archive.path, format: payload.format,
                                  offset: payload.member.dataOffset, length: payload.member.size)
        let name = ami.deletingPathExtension().lastPathComponent
        let disk = SourceDisk(id: "disk0", locator: locator, bootOrderHint: 0)
        return SourceReading(description: VMDescription(name: name, disks: [disk], origin: "ami"), facts: facts)
    }

    /// A member is a payload when its magic says disk image, or when it is named like a raw
    /// disk and sized in whole sectors (raw has no magic).
    private static func payloadFormat(_ reader: ByteRangeReader, name: String) throws -> String? {
        switch try InputProbe.signature(of: reader) {
        case .sparseVMDK: return "vmdk"
        case .qcow2: return "qcow2"
        case .vhdx: return "vhdx"
        case .vhd: return "vpc"
        case .unknown:
            let lowered = name.lowercased()
            let rawNamed = [".raw", ".img", ".bin", ".disk"].contains { lowered.hasSuffix($0) }
            return rawNamed && reader.size % 512 == 0 ? "raw" : nil
        default: return nil
        }
    }

    /// `gzip -dc` into `<scratch>/ami-payload.tar` (through a `.partial` name, so a crash
    /// never leaves a half archive under the final name).
    private static func decompress(_ ami: URL, into scratchDirectory: URL) async throws -> URL {
        try FileManager.default.createDirectory(at: scratchDirectory, withIntermediateDirectories: true)
        let target = scratchDirectory.appendingPathComponent(decompressedName)
        let partial = scratchDirectory.appendingPathComponent(decompressedName + ".partial")
        try? FileManager.default.removeItem(at: partial)
        // Paths go in as positional parameters, never spliced into the script.
        let command = ExternalCommand("sh", ["-c", "exec gzip -dc -- \"$1\" > \"$2\"", "sh", ami.path, partial.path])
        let result = try await command.run()
        guard result.status == 0 else {
            try? FileManager.default.removeItem(at: partial)
            let reason = result.stderrText.trimmingCharacters(in: .whitespacesAndNewlines)
            let code: StageError.Code = reason.contains("No space left") ? .noSpace : .badInput
            throw StageError(code, file: ami.path, "cannot decompress the AMI archive: \(reason.isEmpty ? "gzip exit \(result.status)" : reason)")
        }
        try? FileManager.default.removeItem(at: target)
        try FileManager.default.moveItem(at: partial, to: target)
        return target
    }
}
