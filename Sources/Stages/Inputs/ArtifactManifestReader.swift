import Foundation

/// Reads an Artifact Manifest v1.0 (JSON or YAML) into the VM it describes, checking every
/// disk file it names before anything uses it.
///
/// In order, stopping at the first problem:
/// 1. parse and validate the manifest (`ArtifactManifest.load`);
/// 2. resolve each `local_path`: it must exist and be (or be a symlink to) a regular file.
///    A symlink is resolved **once, here**, and the disk is read through the resolved path
///    from then on, so swapping the link later cannot change what is converted. Symlinks
///    are allowed because the manifest may name any absolute path anyway; a link gives no
///    extra reach. Two disks that are the same file are refused;
/// 3. verify each `checksum` with a streaming SHA-256 (a mismatch is an error naming the
///    disk, the path, and both digests);
/// 4. check each image's content against its `source_format` (`ArtifactManifestDiskCheck`);
/// 5. compare `bytes` with the file: hypersdk writes the disk's **capacity** there (its
///    example has 100 GiB for a streamOptimized VMDK), so a value equal to either the stored
///    size or the virtual size is fine and anything else is a warning fact, as upstream —
///    an error would refuse every real export, and the checksum is the integrity check.
///
/// The description's boot order follows `ArtifactManifestBootOrder`; the manifest's other
/// directives are reported as facts (see `ArtifactManifest.restricting`).
public enum ArtifactManifestReader {
    public static func read(_ url: URL) async throws -> SourceReading {
        let manifestPath = url.path
        let manifestName = url.lastPathComponent
        let manifest = try ArtifactManifest.load(from: url)

        var facts = summaryFacts(of: manifest, name: manifestName)
        let files = try resolveDiskFiles(manifest.disks, manifestPath: manifestPath)
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
            sourceDisks.append(SourceDisk(id: disk.id, locator: locator, virtualSize: info.virtualSize,
                                          bootOrderHint: boot.hints[index], expectedSHA256: disk.checksum))
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

    struct DiskFile: Equatable {
        var diskID: String
        var declaredPath: String
        var resolvedPath: String
        var size: UInt64
    }

    static func resolveDiskFiles(_ disks: [ArtifactManifest.Disk], manifestPath: String) throws -> [DiskFile] {
        var files: [DiskFile] = []
        var seen: [FileIdentity: Int] = [:]
        for (index, disk) in disks.enumerated() {
            let at = "disks[\(index)].local_path"
            func fail(_ message: String) -> StageError {
                StageError(.badInput, file: manifestPath, "\(at): '\(disk.localPath)' \(message)")
            }
            var linkStatus = stat()
            guard lstat(disk.localPath, &linkStatus) == 0 else {
                throw fail(errno == ENOENT ? "does not exist" : "cannot be read: \(String(cString: strerror(errno)))")
            }
            guard let resolved = realpath(disk.localPath, nil) else {
                throw fail("cannot be resolved (dangling symlink?): \(String(cString: strerror(errno)))")
            }
            let resolvedPath = String(cString: resolved)
            free(resolved)
            var status = stat()
            guard stat(resolvedPath, &status) == 0 else {
                throw fail("cannot be read: \(String(cString: strerror(errno)))")
            }
            guard status.st_mode & S_IFMT == S_IFREG else {
                throw fail("is not a regular file")
            }
            let identity = FileIdentity(device: UInt64(status.st_dev), inode: UInt64(status.st_ino))
            if let earlier = seen[identity] {
                throw fail("is the same file as disks[\(earlier)].local_path")
            }
            seen[identity] = index
            files.append(DiskFile(diskID: disk.id, declaredPath: disk.localPath, resolvedPath: resolvedPath,
                                  size: UInt64(max(0, status.st_size))))
        }
        return files
    }

    private struct FileIdentity: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    private static func verifyChecksum(_ expected: String, of file: DiskFile, manifestName: String) async throws {
        let url = URL(fileURLWithPath: file.resolvedPath)
        let actual = "sha256:" + (try await BlockingWork.run("h2k-mf-sha256") { try FileDigest.sha256(of: url) })
        guard actual == expected else {
            throw StageError(.badInput, file: file.resolvedPath,
                             "disk \(file.diskID) of \(manifestName): checksum mismatch: the manifest expects \(expected) but the file has \(actual) (altered or incompletely copied)")
        }
    }
}
