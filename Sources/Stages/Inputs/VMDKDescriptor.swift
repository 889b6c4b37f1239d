import Foundation

/// A VMDK text descriptor: the create type, the extents holding the data, and the parent
/// of a snapshot.
///
/// Descriptors are untrusted: an extent or parent name is a path qemu will open, so every
/// name must be a plain file in the descriptor's own directory (see `validateChain`).
public struct VMDKDescriptor: Sendable, Equatable {
    public enum ExtentType: String, Sendable, Equatable {
        case flat = "FLAT", sparse = "SPARSE", zero = "ZERO", vmfs = "VMFS", vmfsSparse = "VMFSSPARSE"
        case seSparse = "SESPARSE", vmfsRDM = "VMFSRDM", vmfsRaw = "VMFSRAW"
    }

    public struct Extent: Sendable, Equatable {
        /// RW, RDONLY or NOACCESS.
        public var access: String
        public var sectors: UInt64
        public var type: ExtentType
        /// nil for ZERO extents.
        public var fileName: String?
        /// Start of the extent's data inside its file, in sectors (FLAT/VMFS only).
        public var offsetSectors: UInt64
    }

    public static let signature = "# Disk DescriptorFile"
    /// A descriptor is a few hundred bytes; anything bigger is not one.
    static let maximumTextBytes = 64 * 1024
    static let maximumChainDepth = 32

    public var createType: String?
    public var cid: String?
    public var parentCID: String?
    public var parentFileNameHint: String?
    public var extents: [Extent]

    /// True when this is a snapshot delta (has a parent).
    public var hasParent: Bool {
        if let hint = parentFileNameHint, !hint.isEmpty { return true }
        if let parentCID, parentCID.lowercased() != "ffffffff" { return true }
        return false
    }

    /// Parses descriptor text. `file` names the descriptor in errors.
    ///
    /// - Throws: `StageError(.badInput)` for a malformed extent line, and for any text whose
    ///   extents or parent qemu would read differently (see `QemuVMDKDescriptorScan`).
    public static func parse(_ text: String, file: String) throws -> VMDKDescriptor {
        // qemu reads a C string: nothing after a NUL exists for it, so nothing after one counts here either.
        let visible = String(text.unicodeScalars.prefix { $0 != "\0" })
        let bytes = Array(visible.utf8)
        // First, so that an extent split across lines is reported as such rather than as whatever
        // its first line looks like on its own.
        let qemuScan = QemuVMDKDescriptorScan.extents(in: bytes)
        if case .extents(let found) = qemuScan, let split = found.first(where: { $0.firstLine != $0.lastLine }) {
            throw StageError(.badInput, file: file,
                             "extent line \(split.firstLine) is split across lines: qemu reads lines \(split.firstLine)-\(split.lastLine) as one extent naming '\(String(decoding: split.fileName, as: UTF8.self))' (an extent must be on one line, with no blank line before it)")
        }
        var descriptor = VMDKDescriptor(extents: [])
        var extentLines: [Int] = []
        for (index, rawLine) in visible.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if let extent = try parseExtent(line, file: file) {
                descriptor.extents.append(extent)
                extentLines.append(index + 1)
                continue
            }
            guard let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces)
            let value = unquote(line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces))
            switch key {
            case "createType": descriptor.createType = value
            case "CID": descriptor.cid = value
            case "parentCID": descriptor.parentCID = value
            case "parentFileNameHint": descriptor.parentFileNameHint = value
            default: break
            }
        }
        try descriptor.checkAgreesWithQemu(qemuScan, bytes: bytes, extentLines: extentLines, file: file)
        return descriptor
    }

    /// Refuses text whose extents or parent qemu reads differently from the line-by-line
    /// reading above: otherwise the names we validated are not the names qemu opens.
    private func checkAgreesWithQemu(_ qemuScan: QemuVMDKDescriptorScan.Outcome, bytes: [UInt8], extentLines: [Int],
                                     file: String) throws {
        let qemuExtents: [QemuVMDKDescriptorScan.Extent]
        switch qemuScan {
        case .invalid(let line):
            throw StageError(.badInput, file: file, "extent line \(line) is malformed: qemu refuses it as an invalid extent line")
        case .extents(let found):
            qemuExtents = found
        }
        // qemu opens only RW extents of these types with a positive size; the others are ignored by it.
        let opened = zip(extents, extentLines).filter { extent, _ in
            extent.access == "RW" && extent.sectors > 0 && QemuVMDKDescriptorScan.openedTypes.contains(extent.type.rawValue)
        }
        for index in 0..<max(opened.count, qemuExtents.count) {
            let ours = index < opened.count ? opened[index] : nil
            let theirs = index < qemuExtents.count ? qemuExtents[index] : nil
            if let ours, let theirs, Self.sameExtent(ours.0, theirs) { continue }
            let line = ours?.1 ?? theirs?.firstLine ?? 0
            let qemuView = theirs.map { "\($0.type) '\(String(decoding: $0.fileName, as: UTF8.self))' of \($0.sectors) sectors at \($0.offsetSectors)" }
                ?? "no extent"
            throw StageError(.badInput, file: file,
                             "extent line \(line) is not read the same way by qemu (it reads extent \(index + 1) as \(qemuView)); line endings other than LF, control characters, names longer than 511 bytes and quotes inside names are refused")
        }
        let qemuParent = QemuVMDKDescriptorScan.parentFileNameHint(in: bytes)
        try Self.checkParentAgrees(qemuParent, with: parentFileNameHint, file: file)
    }

    private static func sameExtent(_ extent: Extent, _ qemu: QemuVMDKDescriptorScan.Extent) -> Bool {
        guard let name = extent.fileName, Array(name.utf8) == qemu.fileName, extent.type.rawValue == qemu.type,
              Int64(exactly: extent.sectors) == qemu.sectors else { return false }
        switch extent.type {
        case .flat: return Int64(exactly: extent.offsetSectors) == qemu.offsetSectors
        default: return extent.offsetSectors == 0
        }
    }

    /// The backing file qemu takes (`strstr` for `parentFileNameHint` in the first 20 sectors,
    /// comments included) must be the `parentFileNameHint` line we validate.
    static func checkParentAgrees(_ qemu: QemuVMDKDescriptorScan.ParentHint, with hint: String?, file: String) throws {
        let ours = hint.flatMap { $0.isEmpty ? nil : Array($0.utf8) }
        switch qemu {
        case .invalid:
            throw StageError(.badInput, file: file, "parentFileNameHint is malformed: qemu refuses it (no closing quote, or too long)")
        case .none where ours == nil:
            return
        case .name(let name) where name == ours:
            return
        case .none, .name:
            let qemuName = if case .name(let name) = qemu { "'\(String(decoding: name, as: UTF8.self))'" } else { "none" }
            throw StageError(.badInput, file: file,
                             "parentFileNameHint is not read the same way by qemu: it takes the first 'parentFileNameHint' in the first \(QemuVMDKDescriptorScan.parentWindowBytes) bytes, comments included, as \(qemuName), but the descriptor's parentFileNameHint line says \(hint.map { "'\($0)'" } ?? "none")")
        }
    }

    /// Reads and parses a text descriptor file.
    public static func load(_ url: URL) throws -> VMDKDescriptor {
        try load(from: try ByteRangeReader(path: url.path))
    }

    /// Reads and parses the descriptor text `reader` sees (a pinned file too); errors name `reader.path`.
    static func load(from reader: ByteRangeReader) throws -> VMDKDescriptor {
        let url = URL(fileURLWithPath: reader.path)
        guard reader.size <= UInt64(maximumTextBytes) else {
            throw StageError(.badInput, file: url.path, "not a VMDK descriptor: \(reader.size) bytes is too large for one")
        }
        let data = try reader.read(at: 0, count: maximumTextBytes)
        // qemu opens extent names as raw bytes: a name that is not UTF-8 cannot be checked as it will be opened.
        guard let text = String(validating: data.prefix { $0 != 0 }, as: UTF8.self) else {
            throw StageError(.badInput, file: url.path, "not a VMDK descriptor: its text is not UTF-8")
        }
        guard text.trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix(signature) else {
            throw StageError(.badInput, file: url.path, "not a VMDK descriptor: it does not start with '\(signature)'")
        }
        return try parse(text, file: url.path)
    }

    /// `RW 65536 FLAT "x-flat.vmdk" 0` → an extent; nil when the line is not an extent line.
    private static func parseExtent(_ line: String, file: String) throws -> Extent? {
        let access = ["RW", "RDONLY", "NOACCESS"].first { line.hasPrefix($0 + " ") || line.hasPrefix($0 + "\t") }
        guard let access else { return nil }
        var rest = Substring(line.dropFirst(access.count)).drop { $0 == " " || $0 == "\t" }
        let sectorsText = rest.prefix { $0.isNumber }
        guard let sectors = UInt64(sectorsText) else {
            throw StageError(.badInput, file: file, "malformed extent line (no sector count): \(line)")
        }
        rest = rest.dropFirst(sectorsText.count).drop { $0 == " " || $0 == "\t" }
        let typeText = rest.prefix { $0 != " " && $0 != "\t" }
        guard let type = ExtentType(rawValue: String(typeText)) else {
            throw StageError(.badInput, file: file, "unsupported extent type '\(typeText)' in: \(line)")
        }
        rest = rest.dropFirst(typeText.count).drop { $0 == " " || $0 == "\t" }
        if type == .zero { return Extent(access: access, sectors: sectors, type: type, fileName: nil, offsetSectors: 0) }
        guard rest.first == "\"", let close = rest.dropFirst().firstIndex(of: "\"") else {
            throw StageError(.badInput, file: file, "malformed extent line (file name not quoted): \(line)")
        }
        let name = String(rest[rest.index(after: rest.startIndex)..<close])
        let tail = rest[rest.index(after: close)...].trimmingCharacters(in: .whitespaces)
        var offset: UInt64 = 0
        if !tail.isEmpty {
            guard let parsed = UInt64(tail) else {
                throw StageError(.badInput, file: file, "malformed extent offset '\(tail)' in: \(line)")
            }
            offset = parsed
        }
        return Extent(access: access, sectors: sectors, type: type, fileName: name, offsetSectors: offset)
    }

    private static func unquote(_ value: String) -> String {
        guard value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") else { return value }
        return String(value.dropFirst().dropLast())
    }

    /// Checks that every file this descriptor names is a plain, existing regular file
    /// beside it, and that FLAT extents are as long as the descriptor says.
    ///
    /// - Returns: the extent files, in descriptor order.
    /// - Throws: `StageError(.badInput)` naming the descriptor and the offending name.
    public func validatedExtentFiles(besides descriptorURL: URL) throws -> [URL] {
        let directory = descriptorURL.deletingLastPathComponent()
        var files: [URL] = []
        for extent in extents {
            if extent.type == .vmfsRDM || extent.type == .vmfsRaw {
                throw StageError(.badInput, file: descriptorURL.path,
                                 "extent type \(extent.type.rawValue) maps a raw device; only file-backed extents are accepted")
            }
            guard let name = extent.fileName else { continue }
            let url = try Self.plainSibling(named: name, of: descriptorURL, in: directory, role: "extent")
            if extent.type == .flat || extent.type == .vmfs {
                let endSector = try CheckedArithmetic.add(extent.offsetSectors, extent.sectors,
                                                          field: "extent '\(name)' offset + sectors", file: descriptorURL.path)
                let required = try endSector.sectorsToBytes(field: "extent '\(name)' end", file: descriptorURL.path)
                let size = try Self.fileSize(url)
                guard size >= required else {
                    throw StageError(.badInput, file: url.path,
                                     "truncated flat extent: descriptor \(descriptorURL.lastPathComponent) needs \(required) bytes, the file has \(size)")
                }
            }
            files.append(url)
        }
        return files
    }

    /// Validates a whole VMDK (text descriptor or sparse file) and its snapshot parents
    /// before qemu opens any of it.
    ///
    /// Every extent and parent must be a plain file name in the same directory (no `/`, no
    /// `..`, no symlink), exist, and be a regular file; sparse extents must not be truncated.
    /// - Returns: every file the image consists of (descriptors, extents, parents).
    public static func validateChain(startingAt url: URL) throws -> [URL] {
        var visited: [URL] = []
        var current: URL? = url
        while let file = current {
            guard visited.count < maximumChainDepth else {
                throw StageError(.badInput, file: url.path, "snapshot chain deeper than \(maximumChainDepth) levels")
            }
            guard !visited.contains(file) else {
                throw StageError(.badInput, file: file.path, "snapshot chain loops back to \(file.lastPathComponent)")
            }
            visited.append(file)
            let reader = try ByteRangeReader(path: file.path)
            let head = try reader.read(at: 0, count: 512)
            let descriptor: VMDKDescriptor?
            if head.hasPrefix(SparseVMDKLayout.magic) {
                let layout = try SparseVMDKLayout(reading: reader)
                try layout.verifyComplete(in: reader)
                descriptor = try layout.embeddedDescriptor(in: reader).map { try parse($0, file: file.path) }
                // qemu looks for the parent of a sparse file in the 20 sectors after the header, wherever
                // the header says the descriptor is.
                let window = try reader.read(at: 512, count: QemuVMDKDescriptorScan.parentWindowBytes)
                try checkParentAgrees(QemuVMDKDescriptorScan.parentFileNameHint(in: Array(window)),
                                      with: descriptor?.parentFileNameHint, file: file.path)
            } else {
                let loaded = try load(file)
                for extent in try loaded.validatedExtentFiles(besides: file) where !visited.contains(extent) {
                    visited.append(extent)
                    let extentReader = try ByteRangeReader(path: extent.path)
                    if try extentReader.read(at: 0, count: 4).hasPrefix(SparseVMDKLayout.magic) {
                        try SparseVMDKLayout(reading: extentReader).verifyComplete(in: extentReader)
                    }
                }
                descriptor = loaded
            }
            current = nil
            if let descriptor, descriptor.hasParent {
                guard let hint = descriptor.parentFileNameHint, !hint.isEmpty else {
                    throw StageError(.badInput, file: file.path, "snapshot (parentCID set) without parentFileNameHint")
                }
                current = try plainSibling(named: hint, of: file, in: file.deletingLastPathComponent(), role: "parent")
            }
        }
        return visited
    }

    /// Which files of a directory listing are extents of which descriptor: maps each
    /// descriptor's name to its extent names (those present in the listing).
    ///
    /// Used to recognise that `x-flat.vmdk` or `x-s001.vmdk` belong to `x.vmdk` and are not
    /// inputs of their own. Files that are not readable descriptors are ignored.
    public static func extentOwnership(in directory: URL, listing: [String]) -> [String: [String]] {
        let present = Set(listing)
        var owners: [String: [String]] = [:]
        for name in listing where name.lowercased().hasSuffix(".vmdk") {
            let url = directory.appendingPathComponent(name)
            guard let size = try? fileSize(url), size > 0, size <= UInt64(maximumTextBytes),
                  let descriptor = try? load(url) else { continue }
            let extentNames = descriptor.extents.compactMap(\.fileName).filter { present.contains($0) && $0 != name }
            owners[name] = extentNames
        }
        return owners
    }

    /// Resolves `name` as a plain file in `directory`, or throws naming `referrer`.
    static func plainSibling(named name: String, of referrer: URL, in directory: URL, role: String) throws -> URL {
        guard PlainFileName.isPlain(name) else {
            throw StageError(.badInput, file: referrer.path,
                             "\(role) '\(name)' is not a plain file name in the same directory (paths, '..' and absolute names are refused)")
        }
        let url = directory.appendingPathComponent(name)
        var status = stat()
        guard lstat(url.path, &status) == 0 else {
            throw StageError(.badInput, file: referrer.path, "\(role) '\(name)' is missing")
        }
        guard status.st_mode & S_IFMT == S_IFREG else {
            let what = status.st_mode & S_IFMT == S_IFLNK ? "a symbolic link" : "not a regular file"
            throw StageError(.badInput, file: referrer.path, "\(role) '\(name)' is \(what); only regular files are accepted")
        }
        return url
    }

    static func fileSize(_ url: URL) throws -> UInt64 {
        var status = stat()
        guard stat(url.path, &status) == 0 else {
            throw StageError(.ioFailed, file: url.path, "cannot stat: \(String(cString: strerror(errno)))")
        }
        return UInt64(max(0, status.st_size))
    }
}

/// The one rule for names found inside untrusted inputs (tar members, OVF hrefs, VMDK
/// extents): a single path component, not `.`/`..`, no NUL or control characters.
public enum PlainFileName {
    public static func isPlain(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 255, name != ".", name != ".." else { return false }
        return !name.unicodeScalars.contains { $0 == "/" || $0 == "\\" || $0.value < 0x20 || $0.value == 0x7f }
    }
}
