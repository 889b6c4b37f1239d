import Foundation

/// Reads an OVA in place: lists the tar safely, verifies the `.mf`, parses the `.ovf`, and
/// describes the VM with disks that point into the archive (nothing is extracted).
public enum OVAReader {
    public static func read(_ ova: URL) throws -> SourceReading {
        let path = ova.path
        let members = try TarArchiveReader(url: ova).members().filter { $0.kind == .regularFile }
        let byName = Dictionary(members.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var facts: [String] = []

        let descriptors = members.filter { $0.name.lowercased().hasSuffix(".ovf") }
        guard let ovfMember = descriptors.first else {
            throw StageError(.badInput, file: path, "OVA holds no .ovf descriptor")
        }
        guard descriptors.count == 1 else {
            throw StageError(.badInput, file: path,
                             "OVA holds \(descriptors.count) .ovf descriptors (\(descriptors.map(\.name).joined(separator: ", "))); expected one")
        }

        let manifests = members.filter { $0.name.lowercased().hasSuffix(".mf") }
        guard manifests.count <= 1 else {
            throw StageError(.badInput, file: path, "OVA holds \(manifests.count) .mf manifests; expected at most one")
        }
        var manifest: OVFManifest?
        if let manifestMember = manifests.first {
            let label = "\(path) (member \(manifestMember.name))"
            guard manifestMember.size <= 1 << 20 else {
                throw StageError(.badInput, file: label, "manifest of \(manifestMember.size) bytes is implausibly large")
            }
            let text = try ByteRangeReader(path: path, offset: manifestMember.dataOffset, length: manifestMember.size)
                .read(at: 0, count: Int(manifestMember.size))
            let parsed = try OVFManifest.parse(String(decoding: text, as: UTF8.self), file: label)
            try parsed.verify(manifestFile: label) { name in
                byName[name].map { (ova, $0.dataOffset, $0.size) }
            }
            manifest = parsed
            facts.append("manifest \(manifestMember.name) verified: \(parsed.entries.count) digests match")
        } else {
            facts.append("OVA has no .mf manifest: member digests not verified")
        }

        guard ovfMember.size <= UInt64(OVFDescriptor.maximumBytes) else {
            throw StageError(.badInput, file: "\(path) (member \(ovfMember.name))", "OVF descriptor is implausibly large")
        }
        let ovfData = try ByteRangeReader(path: path, offset: ovfMember.dataOffset, length: ovfMember.size)
            .read(at: 0, count: Int(ovfMember.size))
        // Foundation's XMLParser kills the process on some inputs (found by fuzzing): refused first.
        if let problem = XMLParserHazards.problem(in: ovfData) {
            throw StageError(.badInput, file: "\(path) (member \(ovfMember.name))", "OVF descriptor refused: \(problem)")
        }
        let ovf = try OVFDescriptor.parse(ovfData, file: "\(path) (member \(ovfMember.name))")
        guard !ovf.disks.isEmpty else {
            throw StageError(.badInput, file: path, "the OVF in this OVA describes no disks")
        }
        facts.append("descriptor \(ovfMember.name): \(ovf.dialect.rawValue)")
        facts += ovf.notes
        facts += OVFPackageFacts.certificates(members.filter { $0.name.lowercased().hasSuffix(".cert") }.map { ($0.name, $0.size) },
                                              hasManifest: manifest != nil)
        let packaged = Set([ovfMember.name] + manifests.map(\.name) + ovf.referencedFiles)
        facts += OVFPackageFacts.unlisted(members.map(\.name).filter { !packaged.contains($0) && !$0.lowercased().hasSuffix(".cert") })

        var disks: [SourceDisk] = []
        for (index, disk) in ovf.disks.enumerated() {
            if disk.compression != nil || disk.href.lowercased().hasSuffix(".gz") {
                throw StageError(.badInput, file: path, "disk '\(disk.href)' is gzip-compressed; compressed OVA disks are not supported yet")
            }
            try OVFPackageFacts.refuseChunked(disk, file: path)
            guard let member = byName[disk.href] else {
                throw StageError(.badInput, file: path, "the OVF references disk '\(disk.href)', which is not in the archive")
            }
            if let promised = disk.fileSize, promised != member.size {
                throw StageError(.badInput, file: path,
                                 "disk '\(disk.href)' is \(member.size) bytes but the OVF says \(promised): truncated or altered")
            }
            if let manifest, !manifest.entries.contains(where: { $0.fileName == disk.href }) {
                facts.append("disk \(disk.href) is not listed in the manifest: its digest was not verified")
            }
            let reader = try ByteRangeReader(path: path, offset: member.dataOffset, length: member.size)
            let format = try OVFDescriptor.diskFormat(of: reader, file: path, href: disk.href)
            let locator = DiskLocator(path: path, format: format, offset: member.dataOffset, length: member.size)
            disks.append(SourceDisk(id: OVFDescriptor.safeDiskID(disk.diskID, index: index), locator: locator,
                                    virtualSize: disk.capacityBytes, bootOrderHint: ovf.bootOrderHint(ofDiskAt: index),
                                    expectedSHA256: manifest?.sha256(of: disk.href)))
        }
        return SourceReading(description: ovf.vmDescription(disks: disks), facts: facts)
    }
}
