import Foundation

/// An OVF manifest (`.mf`): one `SHA256(name)= hex` (or SHA1/SHA512) line per file.
public struct OVFManifest: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var algorithm: DigestAlgorithm
        public var fileName: String
        /// Lowercase hex.
        public var digest: String
    }

    public var entries: [Entry]

    /// Parses manifest text; `file` names the manifest in errors.
    public static func parse(_ text: String, file: String) throws -> OVFManifest {
        var entries: [Entry] = []
        for (number, rawLine) in text.split(whereSeparator: \.isNewline).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            guard let open = line.firstIndex(of: "("), let close = line.lastIndex(of: ")"), open < close,
                  let equals = line[close...].firstIndex(of: "=") else {
                throw StageError(.badInput, file: file, "manifest line \(number + 1) is not 'ALGO(name)= digest': \(line)")
            }
            let algorithmName = line[..<open].trimmingCharacters(in: .whitespaces).lowercased()
            guard let algorithm = DigestAlgorithm(rawValue: algorithmName) else {
                throw StageError(.badInput, file: file, "manifest line \(number + 1) uses unsupported digest '\(line[..<open])'")
            }
            let name = String(line[line.index(after: open)..<close])
            let digest = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces).lowercased()
            guard PlainFileName.isPlain(name) else {
                throw StageError(.badInput, file: file, "manifest names '\(name)', which is not a plain file name")
            }
            guard digest.count == algorithm.hexLength, digest.allSatisfy(\.isHexDigit) else {
                throw StageError(.badInput, file: file, "manifest digest for '\(name)' is not \(algorithm.hexLength) hex digits")
            }
            entries.append(Entry(algorithm: algorithm, fileName: name, digest: digest))
        }
        return OVFManifest(entries: entries)
    }

    /// Checks every entry against the bytes `locate` finds for it.
    ///
    /// - Parameters:
    ///   - manifestFile: named in errors about the manifest itself.
    ///   - locate: the file and byte range holding a listed name, or nil when it is missing.
    /// - Throws: `StageError(.badInput)` naming the member when it is missing or its digest differs.
    public func verify(manifestFile: String,
                       locate: (String) -> (url: URL, offset: UInt64, length: UInt64?)?) throws {
        for entry in entries {
            guard let place = locate(entry.fileName) else {
                throw StageError(.badInput, file: manifestFile, "manifest lists '\(entry.fileName)', which is missing")
            }
            let actual = try FileDigest.hash(entry.algorithm, of: place.url, offset: place.offset, length: place.length)
            guard actual == entry.digest else {
                throw StageError(.badInput, file: manifestFile,
                                 "\(entry.algorithm.rawValue.uppercased()) digest mismatch for '\(entry.fileName)': the manifest says \(entry.digest), the content is \(actual)")
            }
        }
    }

    /// The SHA-256 the manifest promises for `name`, as `sha256:<hex>`.
    public func sha256(of name: String) -> String? {
        entries.first { $0.fileName == name && $0.algorithm == .sha256 }.map { "sha256:" + $0.digest }
    }
}

/// A VM description plus the facts found while reading it (e.g. "no manifest"), for the journal.
public struct SourceReading: Sendable, Equatable {
    public var description: VMDescription
    public var facts: [String]

    public init(description: VMDescription, facts: [String] = []) {
        self.description = description
        self.facts = facts
    }
}

extension OVFDescriptor {
    /// The qemu driver of a disk whose first bytes (within a reader) look like an image.
    static func diskFormat(of reader: ByteRangeReader, file: String, href: String) throws -> String {
        switch try InputProbe.signature(of: reader) {
        case .sparseVMDK, .vmdkDescriptor: return "vmdk"
        case .qcow2: return "qcow2"
        case .vhdx: return "vhdx"
        case .vhd: return "vpc"
        case .gzip:
            throw StageError(.badInput, file: file, "disk '\(href)' is gzip-compressed; compressed OVF disks are not supported yet")
        default:
            guard reader.size > 0, reader.size % 512 == 0 else {
                throw StageError(.badInput, file: file, "disk '\(href)' is not a recognised disk image")
            }
            return "raw"
        }
    }

    /// A `SourceDisk` id usable in file names: the OVF disk id with anything odd replaced.
    static func safeDiskID(_ id: String, index: Int) -> String {
        let cleaned = String(id.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" }.prefix(64))
        return cleaned.isEmpty ? "disk\(index)" : cleaned
    }

    /// The VM description, given where each disk lives.
    func vmDescription(disks located: [SourceDisk]) -> VMDescription {
        VMDescription(name: name, vcpus: vcpus, memoryMiB: memoryMiB, firmware: firmware, disks: located,
                      nics: nics, osHint: osHint, origin: "ovf")
    }
}
