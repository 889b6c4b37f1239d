import Foundation

/// Reads a `.ovf` whose disks (and optional `.mf`) sit beside it in the same directory.
public enum OVFDirectoryReader {
    public static func read(_ ovfURL: URL) throws -> SourceReading {
        let path = ovfURL.path
        let directory = ovfURL.deletingLastPathComponent()
        let ovf = try OVFDescriptor.load(ovfURL)
        guard !ovf.disks.isEmpty else {
            throw StageError(.badInput, file: path, "the OVF describes no disks")
        }
        var facts: [String] = []

        let manifestURL = ovfURL.deletingPathExtension().appendingPathExtension("mf")
        var manifest: OVFManifest?
        if FileManager.default.fileExists(atPath: manifestURL.path) {
            _ = try VMDKDescriptor.plainSibling(named: manifestURL.lastPathComponent, of: ovfURL, in: directory, role: "manifest")
            let reader = try ByteRangeReader(path: manifestURL.path)
            guard reader.size <= 1 << 20 else {
                throw StageError(.badInput, file: manifestURL.path, "manifest of \(reader.size) bytes is implausibly large")
            }
            let parsed = try OVFManifest.parse(String(decoding: try reader.read(at: 0, count: 1 << 20), as: UTF8.self),
                                               file: manifestURL.path)
            try parsed.verify(manifestFile: manifestURL.path) { name in
                guard let url = try? VMDKDescriptor.plainSibling(named: name, of: manifestURL, in: directory, role: "file")
                else { return nil }
                return (url, 0, nil)
            }
            manifest = parsed
            facts.append("manifest \(manifestURL.lastPathComponent) verified: \(parsed.entries.count) digests match")
        } else {
            facts.append("no \(manifestURL.lastPathComponent) beside the OVF: disk digests not verified")
        }

        facts.append("descriptor \(ovfURL.lastPathComponent): \(ovf.dialect.rawValue)")
        facts += ovf.notes
        let certificateURL = ovfURL.deletingPathExtension().appendingPathExtension("cert")
        if FileManager.default.fileExists(atPath: certificateURL.path) {
            let certificate = try VMDKDescriptor.plainSibling(named: certificateURL.lastPathComponent, of: ovfURL, in: directory, role: "certificate")
            facts += OVFPackageFacts.certificates([(certificate.lastPathComponent, try VMDKDescriptor.fileSize(certificate))],
                                                  hasManifest: manifest != nil)
        }

        var disks: [SourceDisk] = []
        for (index, disk) in ovf.disks.enumerated() {
            if disk.compression != nil || disk.href.lowercased().hasSuffix(".gz") {
                throw StageError(.badInput, file: path, "disk '\(disk.href)' is gzip-compressed; compressed OVF disks are not supported yet")
            }
            try OVFPackageFacts.refuseChunked(disk, file: path)
            let diskURL: URL
            do {
                diskURL = try VMDKDescriptor.plainSibling(named: disk.href, of: ovfURL, in: directory, role: "disk")
            } catch let error as StageError where error.message.hasSuffix("is missing") {
                throw StageError(.badInput, file: path,
                                 "the OVF references disk '\(disk.href)', which is missing from \(directory.path)")
            }
            let reader = try ByteRangeReader(path: diskURL.path)
            if let promised = disk.fileSize, promised != reader.size {
                throw StageError(.badInput, file: diskURL.path,
                                 "disk is \(reader.size) bytes but the OVF says \(promised): truncated or altered")
            }
            let format = try OVFDescriptor.diskFormat(of: reader, file: path, href: disk.href)
            disks.append(SourceDisk(id: OVFDescriptor.safeDiskID(disk.diskID, index: index),
                                    locator: DiskLocator(path: diskURL.path, format: format),
                                    virtualSize: disk.capacityBytes, bootOrderHint: ovf.bootOrderHint(ofDiskAt: index),
                                    expectedSHA256: manifest?.sha256(of: disk.href)))
        }
        return SourceReading(description: ovf.vmDescription(disks: disks), facts: facts)
    }
}
