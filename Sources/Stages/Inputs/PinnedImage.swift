import Foundation

/// An untrusted disk image made safe to hand to qemu: every file qemu will read is opened by
/// us once and pinned (see `PinnedFile`), and qemu gets a closed option tree (`json:{…}`)
/// that names each driver and each file, so it resolves no name it finds inside the image.
///
/// - Backing files: none, unless a chain we validated and pinned link by link (a qcow2
///   backing file or a VMDK parent that is a plain regular file beside its child).
/// - Data files: none; a qcow2 that declares an external data file is refused.
/// - Protocols: none; every file node is `{"driver": "file", "filename": "/proc/<pid>/fd/<n>"}`.
/// - VMDK text descriptors are never given to qemu as found: we write our own copy, with
///   only the extents we parsed, each named by its pinned descriptor (a relative name would
///   resolve against `/proc/<pid>/fd/` and could reach any descriptor the daemon holds).
///
/// `verifiedByQemu()` then asks qemu what it sees (`qemu-img info`, each link alone) and
/// refuses any difference from what we pinned: another backing name, a data file, an
/// extent we did not open.
///
/// The object must outlive every qemu process that uses `spec`: the names in it are this
/// process's open descriptors.
public final class PinnedImage: Sendable {
    public let locator: DiskLocator
    /// The closed option tree of the whole chain, for `qemu-img convert`/`check`/`create -b`.
    /// Valid only while this object lives: keep it alive (`withExtendedLifetime`) until every
    /// tool given the spec has exited, or a reused descriptor number could name another file.
    public let spec: String
    /// The same tree as a value, to nest under an overlay (`backing`).
    let tree: QemuNode
    /// The chain from the top, each link with what qemu must report about it alone.
    let links: [Link]
    /// Pinned files, directories and descriptor copies, kept open while this object lives.
    private let holds: [Hold]

    struct Link: Sendable {
        var format: String
        /// This link alone, its backing set to null (`qemu-img info` cannot open explicit backing options).
        var tree: QemuNode
        /// File names qemu may report for its data (VMDK extents): our pinned ones.
        var pinnedNames: Set<String>
        /// The backing name qemu must report for this link alone: the header's (qcow2) or the
        /// embedded descriptor's (sparse VMDK) name that we resolved and pinned; nil when none,
        /// and always nil for our descriptor copies, which carry no parent name.
        var reportedBacking: String?
    }

    enum Hold: Sendable {
        case file(PinnedFile), directory(PinnedDirectory), text(PinnedText)
    }

    static let maximumChainDepth = 16

    private init(locator: DiskLocator, tree: QemuNode, links: [Link], holds: [Hold]) {
        self.locator = locator
        self.tree = tree
        self.links = links
        self.holds = holds
        spec = tree.imageSpec
    }

    public var format: String { locator.format }

    /// The top file as opened (its device, inode and size), for identity checks.
    public var topFile: PinnedFile? {
        guard case .file(let file) = holds.first else { return nil }
        return file
    }

    /// The top file's device and inode.
    public var identity: FileIdentity? { topFile.map { FileIdentity(device: $0.device, inode: $0.inode) } }

    /// Opens and validates the image and every file it consists of, without running qemu.
    ///
    /// - Throws: `StageError(.badInput)` naming the file: not a regular file, a symlink, a
    ///   data file, a backing name that is not a plain sibling, a chain too deep or looping,
    ///   a VMDK extent qemu would read that we cannot pin.
    ///   With `expecting`, the file must be the one the probe validated.
    public static func open(_ locator: DiskLocator, expecting identity: FileIdentity? = nil) throws -> PinnedImage {
        var builder = ChainBuilder()
        let top = try PinnedFile.open(locator.path, role: "disk image")
        if let identity, identity != FileIdentity(device: top.device, inode: top.inode) {
            throw StageError(.sourceChanged, file: locator.path,
                             "is not the file that was probed (device \(identity.device), inode \(identity.inode)): it was replaced in the queue")
        }
        builder.holds.append(.file(top))
        let tree: QemuNode
        if locator.isArchiveMember {
            tree = try builder.member(top, locator: locator)
        } else {
            let directory = try PinnedDirectory(containing: locator.path)
            builder.holds.append(.directory(directory))
            tree = try builder.link(top, format: locator.format, directory: directory, depth: 0)
        }
        return PinnedImage(locator: locator, tree: tree, links: builder.links, holds: builder.holds)
    }

    /// `open`, then qemu's own view of each link compared with ours: what a stage does before
    /// handing the image to a tool.
    public static func openVerified(_ locator: DiskLocator, expecting identity: FileIdentity? = nil,
                                    qemuImg: String = "qemu-img") async throws -> PinnedImage {
        let image = try open(locator, expecting: identity)
        _ = try await image.verifiedByQemu(qemuImg: qemuImg)
        return image
    }

    /// Runs `qemu-img info` on each link alone and refuses any difference from what we pinned.
    /// - Returns: qemu's JSON for the top link.
    public func verifiedByQemu(qemuImg: String = "qemu-img") async throws -> [String: Any] {
        var top: [String: Any]?
        for link in links {
            let info = try await QemuView.info(of: link.tree, format: link.format, file: locator.path, qemuImg: qemuImg)
            try QemuView.compare(info, with: link, file: locator.path)
            if top == nil { top = info }
        }
        return top ?? [:]
    }
}

/// Builds the pinned chain, link by link.
private struct ChainBuilder {
    var holds: [PinnedImage.Hold] = []
    var links: [PinnedImage.Link] = []
    private var seen: [(UInt64, UInt64)] = []

    /// An image stored as a byte range of an archive (OVA/AMI member): no siblings at all.
    mutating func member(_ archive: PinnedFile, locator: DiskLocator) throws -> QemuNode {
        let reader = try archive.reader(offset: locator.offset ?? 0, length: locator.length)
        let file = QemuNode.fileRange(archive.procPath, offset: locator.offset ?? 0, size: reader.size)
        var pinned: Set<String> = [archive.procPath]
        switch locator.format {
        case "qcow2":
            let header = try QcowHeader(reading: reader)
            try Self.refuseForeignData(header, file: locator.path)
            if let name = header.backingName {
                throw StageError(.badInput, file: locator.path,
                                 "a disk inside an archive must not have a backing file (\(name.debugDescription))")
            }
        case "vmdk":
            guard try reader.read(at: 0, count: 4).hasPrefix(SparseVMDKLayout.magic) else {
                throw StageError(.badInput, file: locator.path,
                                 "a VMDK inside an archive must be a sparse or streamOptimized extent, not a descriptor naming other files")
            }
            pinned.insert(file.imageSpec)
        default:
            break
        }
        let node = QemuNode.image(format: locator.format, file: file, backing: nil)
        links.append(.init(format: locator.format, tree: node, pinnedNames: pinned, reportedBacking: nil))
        return node
    }

    /// One file of a chain and, recursively, its backing file or parent.
    mutating func link(_ file: PinnedFile, format: String, directory: PinnedDirectory, depth: Int) throws -> QemuNode {
        guard depth < PinnedImage.maximumChainDepth else {
            throw StageError(.badInput, file: file.path, "backing chain deeper than \(PinnedImage.maximumChainDepth) images")
        }
        guard !seen.contains(where: { $0 == (file.device, file.inode) }) else {
            throw StageError(.badInput, file: file.path, "backing chain loops back to \(URL(fileURLWithPath: file.path).lastPathComponent)")
        }
        seen.append((file.device, file.inode))
        let reader = try file.reader()
        var qemuFile = QemuNode.file(file.procPath)
        var pinned: Set<String> = [file.procPath]
        var parent: (name: String, format: String?)?
        var reported: String?
        /// A VMDK snapshot's `parentCID`: the parent's `CID` must still be this value.
        var expectedParentCID: String?
        switch format {
        case "qcow2":
            let header = try QcowHeader(reading: reader)
            try Self.refuseForeignData(header, file: file.path)
            if let name = header.backingName {
                parent = (Self.siblingName(name, directory: directory), header.backingFormat)
                reported = name
            }
        case "vmdk":
            if try reader.read(at: 0, count: 4).hasPrefix(SparseVMDKLayout.magic) {
                let layout = try SparseVMDKLayout(reading: reader)
                if let text = try layout.embeddedDescriptor(in: reader) {
                    let descriptor = try VMDKDescriptor.parse(text, file: file.path)
                    if descriptor.hasParent {
                        parent = (try Self.parentHint(descriptor, file: file.path), "vmdk")
                        reported = parent?.name
                        expectedParentCID = try VMDKChainLink.parentCID(of: descriptor, file: file.path)
                    }
                }
            } else {
                let descriptor = try VMDKDescriptor.load(from: reader)
                let copy = try pinExtents(of: descriptor, referrer: file.path, directory: directory)
                qemuFile = .file(copy.text.procPath)
                pinned = copy.names
                if descriptor.hasParent {
                    parent = (try Self.parentHint(descriptor, file: file.path), "vmdk")
                    expectedParentCID = try VMDKChainLink.parentCID(of: descriptor, file: file.path)
                }
            }
        case "raw", "vpc", "vhdx", "vdi":
            break
        default:
            throw StageError(.badInput, file: file.path, "unsupported disk format '\(format)'")
        }
        links.append(.init(format: format, tree: .image(format: format, file: qemuFile, backing: nil),
                           pinnedNames: pinned, reportedBacking: reported))
        var backing: QemuNode?
        if let parent {
            let parentFile = try PinnedFile.open(named: parent.name, in: directory, referrer: file.path,
                                                 role: format == "vmdk" ? "parent" : "backing file")
            holds.append(.file(parentFile))
            let parentFormat = try Self.format(of: parentFile, declared: parent.format, child: file.path)
            if let expectedParentCID {
                try VMDKChainLink.checkParent(parentFile, expectedCID: expectedParentCID, child: file.path)
            }
            backing = try link(parentFile, format: parentFormat, directory: directory, depth: depth + 1)
        }
        return .image(format: format, file: qemuFile, backing: backing)
    }

    /// Pins every extent qemu would read and writes the descriptor qemu will read instead of
    /// the original: the same extents, in the same order, each named by its pinned descriptor.
    private mutating func pinExtents(of descriptor: VMDKDescriptor, referrer: String,
                                     directory: PinnedDirectory) throws -> (text: PinnedText, names: Set<String>) {
        // The real CID and parentCID: qemu reads a snapshot's unallocated blocks from its parent
        // only while the child's parentCID is the parent's CID (`vmdk_is_cid_valid`).
        let cid = descriptor.cid.flatMap(VMDKChainLink.normalisedCID) ?? "fffffffe"
        let parentCID = descriptor.hasParent ? try VMDKChainLink.parentCID(of: descriptor, file: referrer) : "ffffffff"
        var lines = ["# Disk DescriptorFile", "version=1", "CID=\(cid)", "parentCID=\(parentCID)",
                     "createType=\"\(Self.safeCreateType(descriptor.createType))\""]
        var names: Set<String> = []
        for extent in descriptor.extents {
            if extent.type == .vmfsRDM || extent.type == .vmfsRaw {
                throw StageError(.badInput, file: referrer,
                                 "extent type \(extent.type.rawValue) maps a raw device; only file-backed extents are accepted")
            }
            // qemu reads RW extents of these types only and skips every other line (block/vmdk.c).
            guard extent.access == "RW", Self.qemuExtentTypes.contains(extent.type), let name = extent.fileName else { continue }
            let pinned = try PinnedFile.open(named: name, in: directory, referrer: referrer, role: "extent")
            holds.append(.file(pinned))
            try Self.checkExtent(extent, pinned: pinned, referrer: referrer)
            names.insert(pinned.procPath)
            var line = "RW \(extent.sectors) \(extent.type.rawValue) \"\(pinned.procPath)\""
            if extent.type == .flat { line += " \(extent.offsetSectors)" }
            lines.append(line)
        }
        guard !names.isEmpty else {
            throw StageError(.badInput, file: referrer, "VMDK descriptor names no extent qemu could read")
        }
        let text = try PinnedText(lines.joined(separator: "\n") + "\n", name: "hyper2kvm-descriptor")
        holds.append(.text(text))
        return (text, names)
    }

    static let qemuExtentTypes: Set<VMDKDescriptor.ExtentType> = [.flat, .sparse, .vmfs, .vmfsSparse, .seSparse]

    /// A flat extent must hold what the descriptor maps; a sparse one must be complete.
    private static func checkExtent(_ extent: VMDKDescriptor.Extent, pinned: PinnedFile, referrer: String) throws {
        switch extent.type {
        case .flat, .vmfs:
            let (end, overflow) = extent.offsetSectors.addingReportingOverflow(extent.sectors)
            let (bytes, overflowBytes) = end.multipliedReportingOverflow(by: 512)
            guard !overflow, !overflowBytes else {
                throw StageError(.badInput, file: referrer, "extent \(pinned.path) maps past 2^64 bytes (offset \(extent.offsetSectors) + \(extent.sectors) sectors)")
            }
            guard pinned.size >= bytes else {
                throw StageError(.badInput, file: pinned.path,
                                 "truncated flat extent: descriptor \(URL(fileURLWithPath: referrer).lastPathComponent) needs \(bytes) bytes, the file has \(pinned.size)")
            }
        case .sparse, .vmfsSparse:
            let reader = try pinned.reader()
            // ESXi's VMFS5 snapshots (`-delta.vmdk`) are COWD redo logs: qemu reads them, but no
            // check of ours bounds their grain tables yet, so they are refused with a way out.
            if try reader.read(at: 0, count: 4).elementsEqual(Array("COWD".utf8)) {
                throw StageError(.badInput, file: referrer,
                                 "extent \(URL(fileURLWithPath: pinned.path).lastPathComponent) is a VMFS snapshot redo log (COWD, ESXi's -delta.vmdk), which is not read yet: delete (consolidate) the snapshots in vSphere, or export the VM as an OVF, and drop that instead")
            }
            // qemu opens a sparse extent as a sparse VMDK; one with capacity 0 would make it
            // read the embedded descriptor's own extents, so every sparse extent is checked.
            let layout = try SparseVMDKLayout(reading: reader)
            try layout.verifyComplete(in: reader)
        default:
            break
        }
    }

    private static func refuseForeignData(_ header: QcowHeader, file: String) throws {
        if header.declaresDataFile {
            let name = header.dataFileName.map { " (\($0.debugDescription))" } ?? ""
            throw StageError(.badInput, file: file,
                             "qcow2 image declares an external data file\(name): refused, an image must hold its own data")
        }
        if header.encryptionMethod != 0 {
            throw StageError(.badInput, file: file, "qcow2 image is encrypted (method \(header.encryptionMethod)): no key to read it")
        }
    }

    /// qemu records a backing name as given; an absolute name inside the image's own
    /// directory is accepted as that sibling (qemu-img create -b with a full path writes one).
    private static func siblingName(_ name: String, directory: PinnedDirectory) -> String {
        guard name.hasPrefix("/") else { return name }
        let url = URL(fileURLWithPath: name)
        guard url.deletingLastPathComponent().standardizedFileURL.path
                == URL(fileURLWithPath: directory.path).standardizedFileURL.path else { return name }
        return url.lastPathComponent
    }

    private static func parentHint(_ descriptor: VMDKDescriptor, file: String) throws -> String {
        guard let hint = descriptor.parentFileNameHint, !hint.isEmpty else {
            throw StageError(.badInput, file: file, "snapshot (parentCID set) without parentFileNameHint")
        }
        return hint
    }

    /// The format of a backing file, from its content; a declared format must agree.
    private static func format(of file: PinnedFile, declared: String?, child: String) throws -> String {
        let signature = try InputProbe.signature(of: try file.reader())
        let found: String? = switch signature {
        case .qcow2: "qcow2"
        case .sparseVMDK, .vmdkDescriptor: "vmdk"
        case .unknown where declared == "raw": "raw"
        default: nil
        }
        guard let found else {
            throw StageError(.badInput, file: child,
                             "backing file \(URL(fileURLWithPath: file.path).lastPathComponent) is \(signature.rawValue), not a qcow2, VMDK or declared raw image")
        }
        if let declared, declared != found {
            throw StageError(.badInput, file: child,
                             "backing file \(URL(fileURLWithPath: file.path).lastPathComponent) is declared \(declared.debugDescription) but its content is \(found)")
        }
        return found
    }

    /// Only letters and digits reach our descriptor copy (qemu reads createType for the layout).
    private static func safeCreateType(_ value: String?) -> String {
        let kept = (value ?? "").unicodeScalars.filter { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0)) }
        guard !kept.isEmpty else { return "monolithicFlat" }
        let type = String(String.UnicodeScalarView(kept))
        // `vmfsThin` (VDDK's name for a thin VMFS disk, written by some export tools; ESXi itself
        // writes `vmfs` plus `ddb.thinProvisioned`): qemu knows only `vmfs`, and the extents
        // (VMFS, read like FLAT) are the same.
        return type == "vmfsThin" ? "vmfs" : type
    }
}

/// A node of qemu's block option tree, as we build it: only the drivers we name.
indirect enum QemuNode: Sendable, Equatable {
    case file(String)
    case fileRange(String, offset: UInt64, size: UInt64)
    case image(format: String, file: QemuNode, backing: QemuNode?)

    var jsonObject: [String: Any] {
        switch self {
        case .file(let name):
            return ["driver": "file", "filename": name]
        case .fileRange(let name, let offset, let size):
            return ["driver": "raw", "offset": offset, "size": size, "file": ["driver": "file", "filename": name]]
        case .image(let format, let file, let backing):
            return ["driver": format, "file": file.jsonObject, "backing": backing.map(Self.formatNode) ?? NSNull()]
        }
    }

    /// A node as a backing child: a bare file gets an explicit `raw` format node on top.
    /// qemu opens a protocol node named as the backing of an image that is itself a child
    /// (a chunked copy's window) with a `filename` beside the `file` it adds, and refuses
    /// the pair ("Can't specify 'file' and 'filename' options at the same time").
    private static func formatNode(_ node: QemuNode) -> [String: Any] {
        if case .file = node { return ["driver": "raw", "file": node.jsonObject] }
        return node.jsonObject
    }

    /// `json:{…}`, the form every qemu tool takes as an image name.
    var imageSpec: String {
        // Dictionaries of strings, numbers and NSNull always serialise.
        let data = (try? JSONSerialization.data(withJSONObject: jsonObject, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return "json:" + String(decoding: data, as: UTF8.self)
    }

    /// `self` as the top of an overlay chain: a qcow2 overlay we wrote, over this image.
    static func overlay(_ path: String, over backing: QemuNode) -> QemuNode {
        .image(format: "qcow2", file: .file(path), backing: backing)
    }
}

/// qemu's own view of one link, and the comparison with ours.
enum QemuView {
    static func info(of node: QemuNode, format: String, file: String, qemuImg: String) async throws -> [String: Any] {
        let command = ExternalCommand(qemuImg, ["info", "--output=json", "-f", format, node.imageSpec], limits: .untrustedProbe)
        let result = try await command.run(about: file)
        guard result.status == 0 else {
            try result.requireHostResources(of: command, about: file)
            throw StageError(.badInput, file: file, "qemu-img cannot open it as \(format): \(InputProbe.qemuMessage(result))")
        }
        guard let json = try? JSONSerialization.jsonObject(with: result.stdout) as? [String: Any] else {
            throw StageError(.toolFailed, file: file, "qemu-img info printed no JSON object")
        }
        return json
    }

    /// Refuses anything qemu would read that we did not pin.
    static func compare(_ info: [String: Any], with link: PinnedImage.Link, file: String) throws {
        let format = info["format"] as? String
        guard format == link.format else {
            throw StageError(.badInput, file: file, "qemu-img reads it as \(format ?? "nothing"), not \(link.format)")
        }
        let specific = (info["format-specific"] as? [String: Any])?["data"] as? [String: Any]
        if let dataFile = specific?["data-file"] {
            throw StageError(.badInput, file: file, "qemu sees an external data file (\(String(describing: dataFile).debugDescription)): refused")
        }
        let backing = info["backing-filename"] as? String
        guard backing == link.reportedBacking else {
            throw StageError(.badInput, file: file,
                             "qemu sees a backing file \((backing ?? "none").debugDescription) that was not validated: refused")
        }
        let extents = specific?["extents"] as? [[String: Any]] ?? []
        for extent in extents {
            guard let name = extent["filename"] as? String else { continue }
            guard fileNames(in: name).allSatisfy(link.pinnedNames.contains) || link.pinnedNames.contains(name) else {
                throw StageError(.badInput, file: file, "qemu would read an extent we did not validate (\(name.debugDescription)): refused")
            }
        }
    }

    /// The files a qemu file name stands for: itself, or every `filename` inside a `json:` tree
    /// (an empty list when the tree names a driver other than file/raw: never acceptable).
    static func fileNames(in name: String) -> [String] {
        guard name.hasPrefix("json:") else { return [name] }
        guard let object = try? JSONSerialization.jsonObject(with: Data(name.dropFirst(5).utf8)) else { return ["\u{0}"] }
        var names: [String] = []
        var acceptable = true
        func walk(_ value: Any) {
            guard let dictionary = value as? [String: Any] else { return }
            if let driver = dictionary["driver"] as? String, !["file", "raw", "vmdk"].contains(driver) { acceptable = false }
            if let filename = dictionary["filename"] as? String { names.append(filename) }
            dictionary.values.forEach(walk)
        }
        walk(object)
        return acceptable ? names : ["\u{0}"]
    }
}
