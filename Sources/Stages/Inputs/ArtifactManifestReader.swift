import Foundation

/// Reads an Artifact Manifest v1.0 (JSON or YAML) into the VM it describes, checking every
/// disk file it names before anything uses it.
///
/// In order, stopping at the first problem:
/// 1. parse and validate the manifest (`ArtifactManifest.load`);
/// 2. judge each `local_path` before anything about it is looked at
///    (`ArtifactManifestPathPolicy`): only files inside the manifest's own directory (the
///    queue) or under `manifest_allowed_dirs` may be named; anything else gets the same
///    "not allowed" error whether it exists or not. An allowed path is opened (`O_NOFOLLOW`,
///    its real path read back from the descriptor) and must be a regular file; a symlink is
///    resolved **once, here**, and the disk is read through the resolved path from then on,
///    so swapping the link later cannot change what is converted. Two disks that are the
///    same file are refused;
/// 3. verify each `checksum` with a streaming SHA-256 of the opened file (a mismatch is an
///    error naming the disk, the path, and both digests);
/// 4. check each image's content against its `source_format` (`ArtifactManifestDiskCheck`);
/// 5. compare `bytes` with the file: hypersdk writes the disk's **capacity** there (its
///    example has 100 GiB for a streamOptimized VMDK), so a value equal to either the stored
///    size or the virtual size is fine and anything else is a warning fact, as upstream —
///    an error would refuse every real export, and the checksum is the integrity check.
///
/// The description's boot order follows `ArtifactManifestBootOrder`; the manifest's other
/// directives are reported as facts (see `ArtifactManifest.restricting`).
public enum ArtifactManifestReader {
    /// `allowedDirectories`: `manifest_allowed_dirs`, where disks may be besides the manifest's own directory.
    public static func read(_ url: URL, allowedDirectories: [String] = []) async throws -> SourceReading {
        let manifestPath = url.path
        let manifestName = url.lastPathComponent
        let manifest = try ArtifactManifest.load(from: url)

        var facts = summaryFacts(of: manifest, name: manifestName)
        let policy = ArtifactManifestPathPolicy(manifest: url, allowedDirectories: allowedDirectories)
        let files = try resolveDiskFiles(manifest.disks, manifestPath: manifestPath, policy: policy)
        defer { files.forEach { $0.opened.close() } }
        for file in files where file.resolvedPath != file.declaredPath {
            facts.append("disk \(file.diskID): \(file.declaredPath) is a symlink; reading \(file.resolvedPath)")
        }

        for (disk, file) in zip(manifest.disks, files) {
            guard let expected = disk.checksum else {
                facts.append("warning: disk \(disk.id): the manifest gives no checksum; its content is not verified")
                continue
            }
            try await verifyChecksum(expected, of: file, manifestName: manifestName)
            facts.append("disk \(disk.id): sha256 verified against the manifest")
        }

        let boot = ArtifactManifestBootOrder.resolve(manifest.disks)
        var sourceDisks: [SourceDisk] = []
        for (index, (disk, file)) in zip(manifest.disks, files).enumerated() {
            let driver = ArtifactManifest.qemuDrivers[disk.sourceFormat] ?? disk.sourceFormat
            let locator = DiskLocator(path: file.resolvedPath, format: driver)
            let info = try await ArtifactManifestDiskCheck.inspect(locator, diskID: disk.id, manifestFile: manifestName)
            var fact = "disk \(disk.id): \(info.format)"
            if let createType = info.createType { fact += " (\(createType))" }
            fact += ", virtual size \(info.virtualSize) bytes, stored \(info.storedSize) bytes"
            facts.append(fact)
            let declared = UInt64(disk.bytes)
            if declared != file.size && declared != info.virtualSize {
                facts.append("warning: disk \(disk.id): the manifest says \(disk.bytes) bytes, but the file has \(file.size) and a virtual size of \(info.virtualSize)")
            }
            var sourceDisk = SourceDisk(id: disk.id, locator: locator, virtualSize: info.virtualSize,
                                        bootOrderHint: boot.hints[index], expectedSHA256: disk.checksum)
            sourceDisk.identity = info.identity
            sourceDisks.append(sourceDisk)
        }
        facts += boot.facts

        return SourceReading(description: description(of: manifest, manifestURL: url, disks: sourceDisks), facts: facts)
    }

    /// The VM as the manifest describes it. Zero `cpu`/`mem_gb` mean "not given".
    static func description(of manifest: ArtifactManifest, manifestURL: URL, disks: [SourceDisk]) -> VMDescription {
        let declaredName = manifest.source?.vmName?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        let name = declaredName.isEmpty ? manifestURL.deletingPathExtension().lastPathComponent : declaredName
        let vm = manifest.vm
        let nics = (manifest.nics ?? []).map { nic in
            NetworkInterface(mac: nic.mac.map(ArtifactManifest.canonicalMAC), network: nic.network)
        }
        return VMDescription(name: name,
                             vcpus: vm?.cpu.flatMap { $0 > 0 ? $0 : nil },
                             memoryMiB: vm?.memGB.flatMap { $0 > 0 ? $0 * 1024 : nil },
                             firmware: vm?.firmware.flatMap(Firmware.init(rawValue:)) ?? .unknown,
                             disks: disks, nics: nics, osHint: vm?.osHint, origin: "manifest")
    }

    private static func summaryFacts(of manifest: ArtifactManifest, name: String) -> [String] {
        var summary = "artifact manifest \(name): version \(manifest.manifestVersion), \(manifest.disks.count) disk(s)"
        if let provider = manifest.source?.provider { summary += ", from \(provider)" }
        if let method = manifest.source?.exportMethod { summary += " via \(method)" }
        if let version = manifest.metadata?.hypersdkVersion { summary += " (hypersdk \(version))" }
        var facts = [summary]
        if !manifest.unrecognisedKeys.isEmpty {
            facts.append("warning: manifest keys not recognised and ignored: \(manifest.unrecognisedKeys.joined(separator: ", "))")
        }
        facts += manifest.advisoryFacts
        facts += manifest.directiveFacts
        facts += (manifest.notes ?? []).map { "manifest note: \($0)" }
        facts += (manifest.warnings ?? []).map { warning in
            "manifest warning\(warning.stage.map { " (\($0))" } ?? ""): \(warning.message ?? "")"
        }
        return facts
    }

    // MARK: - Disk files

    struct DiskFile {
        var diskID: String
        var declaredPath: String
        var resolvedPath: String { opened.realPath }
        var size: UInt64 { opened.size }
        /// Held open until the manifest is read, so the checksum reads the file that was judged.
        var opened: ArtifactManifestPathPolicy.OpenedFile
    }

    /// Opens every disk the manifest names, each judged by `policy` first. On an error, the
    /// files opened so far are closed.
    static func resolveDiskFiles(_ disks: [ArtifactManifest.Disk], manifestPath: String,
                                 policy: ArtifactManifestPathPolicy) throws -> [DiskFile] {
        var files: [DiskFile] = []
        var seen: [FileIdentity: Int] = [:]
        do {
            for (index, disk) in disks.enumerated() {
                let at = "disks[\(index)].local_path"
                let opened = try policy.open(disk.localPath, field: at, manifestPath: manifestPath)
                files.append(DiskFile(diskID: disk.id, declaredPath: disk.localPath, opened: opened))
                let identity = FileIdentity(device: opened.device, inode: opened.inode)
                if let earlier = seen[identity] {
                    throw StageError(.badInput, file: manifestPath,
                                     "\(at): '\(disk.localPath)' is the same file as disks[\(earlier)].local_path")
                }
                seen[identity] = index
            }
        } catch {
            files.forEach { $0.opened.close() }
            throw error
        }
        return files
    }

    private struct FileIdentity: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    private static func verifyChecksum(_ expected: String, of file: DiskFile, manifestName: String) async throws {
        // Through the descriptor: the bytes hashed are those of the file that was judged.
        let url = URL(fileURLWithPath: file.opened.descriptorPath)
        let actual = "sha256:" + (try await BlockingWork.run("h2k-mf-sha256") { try FileDigest.sha256(of: url) })
        guard actual == expected else {
            throw StageError(.badInput, file: file.resolvedPath,
                             "disk \(file.diskID) of \(manifestName): checksum mismatch: the manifest expects \(expected) but the file has \(actual) (altered or incompletely copied)")
        }
    }
}
