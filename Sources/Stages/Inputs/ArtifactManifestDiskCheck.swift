import Foundation

/// Checks that a manifest disk's content is what its `source_format` says, before anything
/// converts it.
///
/// Most formats go through `InputProbe.inspectImage`, which already refuses content that
/// lacks the format's magic. Two cases need more:
/// - `raw` accepts any bytes, so a qcow2/VMDK/VHD/VDI file declared raw would be copied
///   verbatim into a guest that cannot boot; its content must not carry a known signature.
/// - `vdi` is not a format bare inputs can have, so `InputProbe` does not know it; it is
///   checked here (VDI signature, `qemu-img info` and `check` with `-f vdi`).
enum ArtifactManifestDiskCheck {
    /// `0xbeda107f`, little-endian, at byte 0x40 of every VDI header.
    static let vdiSignature: [UInt8] = [0x7f, 0x10, 0xda, 0xbe]
    static let vdiSignatureOffset: UInt64 = 0x40

    static func inspect(_ locator: DiskLocator, diskID: String, manifestFile: String) async throws -> ImageInfo {
        let path = locator.path
        switch locator.format {
        case "raw":
            let reader = try ByteRangeReader(path: path)
            if hasVDISignature(reader) {
                throw StageError(.badInput, file: path, "disk \(diskID) is declared raw in \(manifestFile), but the file is a VDI image")
            }
            if let kind = try InputProbe.signature(of: reader).imageKind {
                throw StageError(.badInput, file: path,
                                 "disk \(diskID) is declared raw in \(manifestFile), but the file is a \(kind.rawValue) image")
            }
            return try await InputProbe.inspectImage(locator)
        case "vdi":
            return try await inspectVDI(locator, diskID: diskID, manifestFile: manifestFile)
        default:
            return try await InputProbe.inspectImage(locator)
        }
    }

    private static func hasVDISignature(_ reader: ByteRangeReader) -> Bool {
        guard reader.size >= vdiSignatureOffset + 4,
              let bytes = try? reader.read(at: vdiSignatureOffset, count: 4) else { return false }
        return Array(bytes) == vdiSignature
    }

    private static func inspectVDI(_ locator: DiskLocator, diskID: String, manifestFile: String) async throws -> ImageInfo {
        let path = locator.path
        let reader = try ByteRangeReader(path: path)
        guard hasVDISignature(reader) else {
            throw StageError(.badInput, file: path,
                             "disk \(diskID) is declared vdi in \(manifestFile), but the file has no VDI signature")
        }
        let image = try PinnedImage.open(locator)
        var info = try await InputProbe.qemuInfo(image)
        guard info.format == "vdi" else {
            throw StageError(.badInput, file: path, "qemu-img reads it as \(info.format), not vdi")
        }
        guard info.virtualSize > 0 else {
            throw StageError(.badInput, file: path, "disk image has a virtual size of 0 bytes")
        }
        if let backing = info.backingFile {
            throw StageError(.badInput, file: path, "a VDI must not have a backing file ('\(backing)')")
        }
        let check = ExternalCommand("qemu-img", ["check", "--output=json", "-f", "vdi", image.spec],
                                    limits: .untrustedProbe)
        let result = try await check.run()
        // 0: clean; 3: leaked blocks only, harmless for reading.
        guard result.status == 0 || result.status == 3 else {
            try result.requireHostResources(of: check, about: path)
            let detail = result.stderrText.trimmingCharacters(in: .whitespacesAndNewlines)
            throw StageError(.badInput, file: path,
                             "qemu-img check of the vdi image failed (truncated or damaged?): \(detail.isEmpty ? "exit status \(result.status)" : detail)")
        }
        info.storedSize = reader.size
        info.identity = image.identity
        return info
    }
}
