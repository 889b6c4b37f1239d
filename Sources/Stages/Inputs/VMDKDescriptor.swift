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
    public static func parse(_ text: String, file: String) throws -> VMDKDescriptor {
        var descriptor = VMDKDescriptor(extents: [])
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if let extent = try parseExtent(line, file: file) {
                descriptor.extents.append(extent)
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
        return descriptor
    }

    /// Reads and parses a text descriptor file.
    public static func load(_ url: URL) throws -> VMDKDescriptor {
        let reader = try ByteRangeReader(path: url.path)
        guard reader.size <= UInt64(maximumTextBytes) else {
            throw StageError(.badInput, file: url.path, "not a VMDK descriptor: \(reader.size) bytes is too large for one")
        }
        let data = try reader.read(at: 0, count: maximumTextBytes)
        let text = String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
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
                let required = (extent.offsetSectors + extent.sectors) * 512
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
