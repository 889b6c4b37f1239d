import Foundation

/// What `qemu-img info` (plus our own layout checks) learned about one disk image.
public struct ImageInfo: Codable, Sendable, Equatable {
    /// qemu driver: vmdk, vpc, vhdx, raw, qcow2.
    public var format: String
    public var virtualSize: UInt64
    /// Bytes allocated on the host, as qemu reports them.
    public var actualSize: UInt64?
    /// Bytes of the stored image (the file, or the archive member's range).
    public var storedSize: UInt64
    /// VMDK create type (monolithicSparse, streamOptimized, monolithicFlat…).
    public var createType: String?
    public var backingFile: String?
    public var clusterSize: UInt64?
    public var dirty: Bool?
    /// Extent file names of a VMDK, as qemu reports them.
    public var extents: [String]
    /// The file that was validated (its top file, for a chain).
    public var identity: FileIdentity?

    public init(format: String, virtualSize: UInt64, actualSize: UInt64? = nil, storedSize: UInt64,
                createType: String? = nil, backingFile: String? = nil, clusterSize: UInt64? = nil,
                dirty: Bool? = nil, extents: [String] = []) {
        self.format = format
        self.virtualSize = virtualSize
        self.actualSize = actualSize
        self.storedSize = storedSize
        self.createType = createType
        self.backingFile = backingFile
        self.clusterSize = clusterSize
        self.dirty = dirty
        self.extents = extents
    }
}

/// Identifies inputs by content and validates disk images before anything converts them.
public enum InputProbe {
    /// What the first and last bytes of a file say it is.
    enum ContentSignature: String {
        case sparseVMDK = "a sparse VMDK extent"
        case vmdkDescriptor = "a VMDK text descriptor"
        case qcow2 = "a qcow2 image"
        case vhdx = "a VHDX image"
        case vhd = "a VHD image"
        case tar = "a tar archive"
        case gzip = "gzip-compressed data"
        case ovfXML = "an OVF descriptor (XML)"
        case text = "text"
        case unknown = "no known format (no magic bytes)"

        var imageKind: InputKind? {
            switch self {
            case .sparseVMDK, .vmdkDescriptor: .vmdk
            case .qcow2: .qcow2
            case .vhdx: .vhdx
            case .vhd: .vhd
            default: nil
            }
        }
    }

    static let headBytes = 64 * 1024

    /// Decides what `url` is from its extension (what the user claims) and its content
    /// (what it is); the two must agree.
    ///
    /// - Throws: `StageError(.badInput)` naming the file: empty, not a regular file,
    ///   content that contradicts the extension, or nothing recognisable.
    public static func identify(_ url: URL) throws -> InputKind {
        let path = url.path
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw StageError(.badInput, file: path, "cannot read: \(String(cString: strerror(errno)))")
        }
        // A directory is a job only as a Hyper-V export folder (see HyperVExportReader).
        if status.st_mode & S_IFMT == S_IFDIR, HyperVExportReader.looksLikeExport(url) { return .hyperv }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw StageError(.badInput, file: path, status.st_mode & S_IFMT == S_IFDIR
                                 ? "a directory, and not a Hyper-V export (no 'Virtual Hard Disks' folder)" : "not a regular file")
        }
        guard status.st_size > 0 else {
            throw StageError(.badInput, file: path, "empty file (0 bytes): not a disk image, OVA, OVF or manifest")
        }
        let reader = try ByteRangeReader(path: path)
        let content = try signature(of: reader)
        let claimed = url.pathExtension.lowercased()
        switch claimed {
        case "vmdk":
            return try require(content, in: [.sparseVMDK, .vmdkDescriptor], is: .vmdk, file: path, expected: "a VMDK image")
        case "qcow2":
            return try require(content, in: [.qcow2], is: .qcow2, file: path, expected: "a qcow2 image")
        case "vhdx":
            return try require(content, in: [.vhdx], is: .vhdx, file: path, expected: "a VHDX image")
        case "vhd":
            if content != .vhd, try reader.read(at: 0, count: 8).hasPrefix(vhdCookie) {
                throw StageError(.badInput, file: path,
                                 "truncated VHD: the header copy is present but the footer at the end of the file is missing")
            }
            return try require(content, in: [.vhd], is: .vhd, file: path, expected: "a VHD image")
        case "ova":
            return try require(content, in: [.tar], is: .ova, file: path, expected: "an OVA (tar archive)")
        case "ovf":
            return try require(content, in: [.ovfXML], is: .ovf, file: path, expected: "an OVF descriptor")
        case "ami":
            // `aws ec2 export-image` writes a bare disk image; renamed `.ami`, it is that image.
            if [.sparseVMDK, .vhd, .vhdx, .qcow2].contains(content), let kind = content.imageKind { return kind }
            return try require(content, in: [.tar, .gzip], is: .ami, file: path,
                               expected: "an AMI export (tar or tar.gz, or a VMDK, VHD, VHDX or qcow2 image)")
        case "vmx":
            return try require(content, in: [.text], is: .vmx, file: path, expected: "a VMware .vmx configuration (text)")
        case "json", "yaml", "yml":
            return try require(content, in: [.text], is: .manifest, file: path, expected: "a manifest (text)")
        case "raw", "img":
            // ".img" is generic (cloud images are often qcow2 named .img): a recognised image format wins.
            if let kind = content.imageKind { return kind }
            return try acceptRaw(size: UInt64(status.st_size), file: path)
        default:
            if let kind = content.imageKind { return kind }
            switch content {
            case .tar: return .ova
            case .ovfXML: return .ovf
            default:
                throw StageError(.badInput, file: path,
                                 "unrecognised input: extension '.\(claimed)' is not one of vmdk, ova, ovf, vhd, vhdx, raw, img, ami, qcow2, json, yaml, vmx and the content is \(content.rawValue)")
            }
        }
    }

    private static func require(_ content: ContentSignature, in accepted: Set<ContentSignature>, is kind: InputKind,
                                file: String, expected: String) throws -> InputKind {
        guard accepted.contains(content) else {
            throw StageError(.badInput, file: file, "not \(expected): the content is \(content.rawValue)")
        }
        return kind
    }

    private static func acceptRaw(size: UInt64, file: String) throws -> InputKind {
        guard size % 512 == 0 else {
            throw StageError(.badInput, file: file,
                             "not a raw disk image: its size (\(size) bytes) is not a multiple of 512-byte sectors")
        }
        return .raw
    }

    static let vhdCookie: [UInt8] = Array("conectix".utf8)

    static func signature(of reader: ByteRangeReader) throws -> ContentSignature {
        let head = try reader.read(at: 0, count: headBytes)
        if head.hasPrefix([0x51, 0x46, 0x49, 0xfb]) { return .qcow2 }
        if head.hasPrefix(SparseVMDKLayout.magic) { return .sparseVMDK }
        if head.hasPrefix(Array("vhdxfile".utf8)) { return .vhdx }
        if head.hasPrefix(Array("ustar".utf8), at: 257) { return .tar }
        if head.hasPrefix([0x1f, 0x8b]) { return .gzip }
        if reader.size >= 512, try reader.read(at: reader.size - 512, count: 8).hasPrefix(vhdCookie) { return .vhd }
        // An XML document in UTF-16/32 holds NULs: decoded as the OVF parser decodes it.
        if let xml = XMLDocumentText.decodedHead([UInt8](head)), xml.hasPrefix("<"), looksLikeOVFEnvelope(xml[...]) {
            return .ovfXML
        }
        // Text, possibly NUL-padded to a sector (qemu pads descriptors to 512 bytes).
        let textPart = head.prefix { $0 != 0 }
        guard head.dropFirst(textPart.count).allSatisfy({ $0 == 0 }), !textPart.isEmpty else { return .unknown }
        let text = String(decoding: textPart, as: UTF8.self)
        let trimmed = text.drop { $0 == "\u{feff}" || $0.isWhitespace }
        if trimmed.hasPrefix(VMDKDescriptor.signature) { return .vmdkDescriptor }
        if trimmed.hasPrefix("<"), looksLikeOVFEnvelope(trimmed) { return .ovfXML }
        return .text
    }

    /// An XML document whose first element is `Envelope` (any namespace prefix).
    private static func looksLikeOVFEnvelope(_ text: Substring) -> Bool {
        var rest = text
        while let open = rest.firstIndex(of: "<") {
            let after = rest[rest.index(after: open)...]
            if after.hasPrefix("?") || after.hasPrefix("!") {
                // Declaration, comment or DOCTYPE: skip to its end. (The OVF parser refuses DOCTYPE itself.)
                guard let close = after.firstIndex(of: ">") else { return false }
                rest = after[after.index(after: close)...]
                continue
            }
            let name = after.prefix { !$0.isWhitespace && $0 != ">" && $0 != "/" }
            return name == "Envelope" || name.hasSuffix(":Envelope")
        }
        return false
    }

    // MARK: - Images

    /// Validates one disk image with qemu-img (always with an explicit format, under
    /// resource limits) and our own layout checks, and reports what it is.
    ///
    /// VMDK descriptors are checked (extents and parents plain files beside them) before
    /// qemu opens anything; a backing file must be a plain file beside the image; a
    /// truncated image is refused.
    public static func inspectImage(_ locator: DiskLocator) async throws -> ImageInfo {
        let path = locator.path
        // Pinned first: a FIFO, a symlink, a data file or an unsafe backing name is refused
        // before any tool opens anything.
        let image = try PinnedImage.open(locator)
        let reader = try ByteRangeReader(path: path, offset: locator.offset ?? 0, length: locator.length)
        guard reader.size > 0 else {
            throw StageError(.badInput, file: path, "empty disk image (0 bytes)")
        }
        try checkLayout(of: locator, reader: reader)

        let info = imageInfo(fromQemuJSON: try await image.verifiedByQemu())
        guard info.virtualSize > 0 else {
            throw StageError(.badInput, file: path, "disk image has a virtual size of 0 bytes")
        }
        try await checkConsistency(of: image, reader: reader)
        var result = info
        result.storedSize = reader.size
        result.identity = image.identity
        return result
    }

    /// Checks qemu does not catch by itself (see `SparseVMDKLayout`).
    private static func checkLayout(of locator: DiskLocator, reader: ByteRangeReader) throws {
        let path = locator.path
        let head = try reader.read(at: 0, count: 512)
        switch locator.format {
        case "vmdk":
            if head.hasPrefix(SparseVMDKLayout.magic) {
                let layout = try SparseVMDKLayout(reading: reader)
                try layout.verifyComplete(in: reader)
                if locator.isArchiveMember, let text = try layout.embeddedDescriptor(in: reader),
                   try VMDKDescriptor.parse(text, file: path).hasParent {
                    throw StageError(.badInput, file: path, "a VMDK inside an archive must not be a snapshot (it names a parent)")
                }
                if !locator.isArchiveMember {
                    _ = try VMDKDescriptor.validateChain(startingAt: URL(fileURLWithPath: path))
                }
            } else if locator.isArchiveMember {
                throw StageError(.badInput, file: path,
                                 "a VMDK inside an archive must be a sparse or streamOptimized extent, not a descriptor naming other files")
            } else {
                _ = try VMDKDescriptor.validateChain(startingAt: URL(fileURLWithPath: path))
            }
        case "vpc":
            guard reader.size >= 512, try reader.read(at: reader.size - 512, count: 8).hasPrefix(vhdCookie) else {
                throw StageError(.badInput, file: path, "not a complete VHD: no 'conectix' footer in its last 512 bytes (truncated?)")
            }
        case "vhdx":
            guard head.hasPrefix(Array("vhdxfile".utf8)) else {
                throw StageError(.badInput, file: path, "not a VHDX image: no 'vhdxfile' signature")
            }
        case "qcow2":
            guard head.hasPrefix([0x51, 0x46, 0x49, 0xfb]) else {
                throw StageError(.badInput, file: path, "not a qcow2 image: no QFI\\xfb magic")
            }
        case "raw":
            guard reader.size % 512 == 0 else {
                throw StageError(.badInput, file: path,
                                 "not a raw disk image: its size (\(reader.size) bytes) is not a multiple of 512")
            }
        default:
            throw StageError(.badInput, file: path, "unsupported disk format '\(locator.format)'")
        }
    }

    /// `qemu-img info --output=json -f FORMAT` of a pinned image, under `Limits.untrustedProbe`.
    static func qemuInfo(_ image: PinnedImage) async throws -> ImageInfo {
        imageInfo(fromQemuJSON: try await image.verifiedByQemu())
    }

    static func imageInfo(fromQemuJSON json: [String: Any]) -> ImageInfo {
        let specific = (json["format-specific"] as? [String: Any])?["data"] as? [String: Any]
        let extents = (specific?["extents"] as? [[String: Any]] ?? []).compactMap { $0["filename"] as? String }
        return ImageInfo(format: json["format"] as? String ?? "",
                         virtualSize: uint64(json["virtual-size"]) ?? 0,
                         actualSize: uint64(json["actual-size"]),
                         storedSize: 0,
                         createType: specific?["create-type"] as? String,
                         backingFile: json["backing-filename"] as? String,
                         clusterSize: uint64(json["cluster-size"]),
                         dirty: json["dirty-flag"] as? Bool,
                         extents: extents)
    }

    /// `qemu-img check` where supported (qcow2, vmdk, vhdx; vpc and raw have none), plus
    /// the qcow2 end-of-image offset against the stored size, which catches a qcow2 cut
    /// by less than a cluster that check itself passes.
    static func checkConsistency(of image: PinnedImage, reader: ByteRangeReader) async throws {
        let locator = image.locator
        let storedSize = reader.size
        guard ["qcow2", "vmdk", "vhdx"].contains(locator.format) else { return }
        let command = ExternalCommand("qemu-img", ["check", "--output=json", "-f", locator.format, image.spec],
                                      limits: .untrustedProbe)
        let result = try await command.run(about: locator.path)
        switch result.status {
        case 0, 3: break  // 3: leaked clusters only, harmless for reading.
        case 2:
            throw StageError(.badInput, file: locator.path, "corrupt \(locator.format) image: \(qemuMessage(result))")
        case 63: return  // "not supported by this format"
        default:
            try result.requireHostResources(of: command, about: locator.path)
            throw StageError(.badInput, file: locator.path,
                             "qemu-img check of the \(locator.format) image failed (truncated or damaged?): \(qemuMessage(result))")
        }
        if let json = try? JSONSerialization.jsonObject(with: result.stdout) as? [String: Any],
           let end = uint64(json["image-end-offset"]), end > storedSize,
           !(locator.format == "qcow2" && (try? QcowTail.endsInShortL1Table(reader, imageEnd: end)) == true),
           !(locator.format == "qcow2" && endsInsideLastCompressedCluster(json, imageEnd: end, storedSize: storedSize,
                                                                          clusterSize: (try? QcowHeader(reading: reader)).map { 1 << UInt64($0.clusterBits) })) {
            throw StageError(.badInput, file: locator.path,
                             "truncated \(locator.format) image: its metadata ends at byte \(end) but it has only \(storedSize) bytes")
        }
    }

    /// qemu counts a compressed cluster's whole host cluster in `image-end-offset`, but
    /// `qemu-img convert -c` ends the file where the last compressed data ends (measured:
    /// 353,792 bytes against an end offset of 393,216 at 64 KiB clusters). A shortfall of less
    /// than one cluster in an image with compressed clusters is therefore not truncation by
    /// itself; a deeper cut still fails here, and a cut inside the last cluster fails the copy,
    /// where qemu reads past the end of the file.
    static func endsInsideLastCompressedCluster(_ check: [String: Any], imageEnd: UInt64, storedSize: UInt64,
                                                clusterSize: UInt64?) -> Bool {
        guard let compressed = uint64(check["compressed-clusters"]), compressed > 0, let clusterSize,
              imageEnd > storedSize else { return false }
        return imageEnd - storedSize < clusterSize
    }

    /// The useful part of qemu-img's complaint: stderr plus any `ERROR:` lines on stdout.
    static func qemuMessage(_ result: ExternalCommand.Result) -> String {
        let errors = result.stdoutText.split(separator: "\n").filter { $0.hasPrefix("ERROR") }.prefix(3)
        let parts = errors.map(String.init) + [result.stderrText.trimmingCharacters(in: .whitespacesAndNewlines)]
        let message = parts.filter { !$0.isEmpty }.joined(separator: "; ")
        return message.isEmpty ? "exit status \(result.status)" : message
    }

    private static func uint64(_ value: Any?) -> UInt64? {
        switch value {
        case let number as NSNumber: number.int64Value >= 0 ? UInt64(number.int64Value) : nil
        case let int as Int: int >= 0 ? UInt64(int) : nil
        default: nil
        }
    }
}
