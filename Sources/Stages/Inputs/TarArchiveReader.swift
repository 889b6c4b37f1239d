import Foundation

/// One member of a tar archive, located but not extracted.
public struct TarMember: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
        case regularFile, directory
    }

    /// Path inside the archive, normalised (no leading `./`, no trailing `/`).
    public var name: String
    public var kind: Kind
    public var size: UInt64
    /// Where the member's data starts in the archive file.
    public var dataOffset: UInt64
}

/// Lists the members of a ustar/pax/GNU tar archive without extracting anything, refusing
/// everything that could escape or lie: `..` or absolute names, links, devices, fifos,
/// data past the end of the file, duplicate names, bad header checksums, absurd counts.
///
/// Applies to OVAs and AMI exports, both untrusted.
public struct TarArchiveReader {
    public static let maximumMembers = 10_000
    /// Pax extended headers and GNU long names are small; a huge one is an attack or garbage.
    static let maximumMetadataBytes: UInt64 = 1 << 20
    private static let block: UInt64 = 512

    public let url: URL

    public init(url: URL) {
        self.url = url
    }

    /// Every member in archive order.
    ///
    /// - Throws: `StageError(.badInput)` naming the archive and, when there is one, the member.
    public func members() throws -> [TarMember] {
        let reader = try ByteRangeReader(path: url.path)
        var members: [TarMember] = []
        var seen: Set<String> = []
        var position: UInt64 = 0
        var pending = PendingOverrides()

        while true {
            guard position + Self.block <= reader.size else {
                // A missing end-of-archive marker is tolerated (some writers omit it) only at a block boundary.
                if position == reader.size, !members.isEmpty, pending.isEmpty { break }
                throw failure("archive ends in the middle of a header at byte \(position): truncated")
            }
            let header = try reader.readExactly(at: position, count: Int(Self.block), what: "tar header")
            if header.allSatisfy({ $0 == 0 }) {
                guard pending.isEmpty else { throw failure("end of archive right after an extended header: truncated") }
                break
            }
            try verifyChecksum(header, at: position)

            let typeFlag = header[header.startIndex + 156]
            let headerName = fullName(header)
            let headerSize = try size(header, at: position, name: headerName)
            let isMetadata = [UInt8(ascii: "x"), UInt8(ascii: "g"), UInt8(ascii: "L"), UInt8(ascii: "K")].contains(typeFlag)
            // A pax `size` overrides the next member's header, not the size of another extended header.
            let size = isMetadata ? headerSize : pending.size ?? headerSize
            let dataOffset = position + Self.block
            let dataEnd = dataOffset.addingReportingOverflow(size)
            guard !dataEnd.overflow, dataEnd.partialValue <= reader.size else {
                throw failure("member '\(pending.path ?? headerName)' claims \(size) bytes, which run past the end of the archive (\(reader.size) bytes): truncated",
                              member: pending.path ?? headerName)
            }
            // size ≤ reader.size here, so rounding it up to a block cannot overflow.
            let next = dataOffset + (size + Self.block - 1) / Self.block * Self.block

            switch typeFlag {
            case UInt8(ascii: "x"):
                let records = try paxRecords(reader, at: dataOffset, size: headerSize, name: headerName)
                guard pending.merge(records) else {
                    throw failure("pax extended header '\(headerName)' has a size record that is not a decimal byte count: '\(records["size"] ?? "")'")
                }
                position = next
                continue
            case UInt8(ascii: "g"):
                // Global pax defaults (comments, mtimes) do not name members: skip them.
                guard headerSize <= Self.maximumMetadataBytes else { throw failure("oversized pax global header") }
                position = next
                continue
            case UInt8(ascii: "L"):
                pending.path = try gnuLongName(reader, at: dataOffset, size: headerSize)
                position = next
                continue
            case UInt8(ascii: "K"):
                // Long link target: the link itself is refused below.
                position = next
                continue
            default:
                break
            }

            let rawName = pending.path ?? headerName
            pending = PendingOverrides()
            let name = try safeName(rawName)
            let kind: TarMember.Kind
            switch typeFlag {
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"): kind = .regularFile
            case UInt8(ascii: "5"): kind = .directory
            case UInt8(ascii: "1"): throw failure("member '\(rawName)' is a hard link; links are refused", member: rawName)
            case UInt8(ascii: "2"): throw failure("member '\(rawName)' is a symbolic link; links are refused", member: rawName)
            case UInt8(ascii: "3"), UInt8(ascii: "4"):
                throw failure("member '\(rawName)' is a device node; only regular files are accepted", member: rawName)
            case UInt8(ascii: "6"): throw failure("member '\(rawName)' is a fifo; only regular files are accepted", member: rawName)
            default:
                throw failure("member '\(rawName)' has unsupported tar type '\(Character(Unicode.Scalar(typeFlag)))'",
                              member: rawName)
            }
            guard seen.insert(name).inserted else {
                throw failure("member '\(name)' appears twice; which copy is meant is ambiguous", member: name)
            }
            members.append(TarMember(name: name, kind: kind, size: kind == .directory ? 0 : size, dataOffset: dataOffset))
            guard members.count <= Self.maximumMembers else {
                throw failure("more than \(Self.maximumMembers) members: refused as implausible")
            }
            position = next
        }
        return members
    }

    // MARK: - Header fields

    private struct PendingOverrides {
        var path: String?
        var size: UInt64?
        var isEmpty: Bool { path == nil && size == nil }

        /// False when the `size` record is not a number (a member's size must never be guessed).
        mutating func merge(_ records: [String: String]) -> Bool {
            if let value = records["path"] { path = value }
            if let value = records["size"] {
                guard let parsed = UInt64(value) else { return false }
                size = parsed
            }
            return true
        }
    }

    /// ustar `prefix/name`, or the plain name for old and GNU headers.
    private func fullName(_ header: Data) -> String {
        let name = cString(header, at: 0, length: 100)
        let isUstar = header.hasPrefix(Array("ustar\0".utf8), at: 257)
        let prefix = isUstar ? cString(header, at: 345, length: 155) : ""
        return prefix.isEmpty ? name : prefix + "/" + name
    }

    private func cString(_ header: Data, at offset: Int, length: Int) -> String {
        let field = header[(header.startIndex + offset)..<(header.startIndex + offset + length)]
        return String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// Octal, or GNU base-256 when the high bit of the first byte is set.
    private func size(_ header: Data, at position: UInt64, name: String) throws -> UInt64 {
        let field = header[(header.startIndex + 124)..<(header.startIndex + 136)]
        if let first = field.first, first & 0x80 != 0 {
            guard first == 0x80, field.dropFirst().prefix(3).allSatisfy({ $0 == 0 }) else {
                throw failure("member '\(name)' has an implausible size field", member: name)
            }
            return field.dropFirst(4).reduce(UInt64(0)) { ($0 << 8) | UInt64($1) }
        }
        return try octal(field, what: "size of member '\(name)'", member: name)
    }

    private func octal(_ field: Data, what: String, member: String?) throws -> UInt64 {
        let digits = field.drop { $0 == 0x20 }.prefix { $0 != 0 && $0 != 0x20 }
        var value: UInt64 = 0
        for digit in digits {
            guard (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(digit), value < (UInt64(1) << 60) else {
                throw failure("malformed \(what)", member: member)
            }
            value = value * 8 + UInt64(digit - UInt8(ascii: "0"))
        }
        return value
    }

    private func verifyChecksum(_ header: Data, at position: UInt64) throws {
        let stored = try octal(header[(header.startIndex + 148)..<(header.startIndex + 156)],
                               what: "header checksum at byte \(position)", member: nil)
        var unsigned: Int64 = 0
        var signed: Int64 = 0
        for (index, byte) in header.enumerated() {
            let value: UInt8 = (148..<156).contains(index) ? 0x20 : byte
            unsigned += Int64(value)
            signed += Int64(Int8(bitPattern: value))
        }
        guard Int64(stored) == unsigned || Int64(stored) == signed else {
            throw failure("tar header checksum error at byte \(position): not a tar archive, or damaged")
        }
    }

    /// Pax records: `"<length> <key>=<value>\n"` repeated.
    private func paxRecords(_ reader: ByteRangeReader, at offset: UInt64, size: UInt64, name: String) throws -> [String: String] {
        guard size <= Self.maximumMetadataBytes else { throw failure("oversized pax extended header '\(name)'") }
        let data = try reader.readExactly(at: offset, count: Int(size), what: "pax extended header")
        var records: [String: String] = [:]
        var cursor = data.startIndex
        while cursor < data.endIndex {
            // The length field is the attacker's: compare it with what is left before adding it to anything.
            guard let space = data[cursor...].firstIndex(of: 0x20),
                  let length = Int(String(decoding: data[cursor..<space], as: UTF8.self)),
                  length > space - cursor + 1, length <= data.endIndex - cursor, data[cursor + length - 1] == 0x0a else {
                if data[cursor...].allSatisfy({ $0 == 0 }) { break }
                throw failure("malformed pax extended header '\(name)': the record length at byte \(cursor - data.startIndex) is not a decimal count of bytes ending in a newline within the header")
            }
            let record = data[(space + 1)..<(cursor + length - 1)]
            if let equals = record.firstIndex(of: UInt8(ascii: "=")) {
                let key = String(decoding: record[record.startIndex..<equals], as: UTF8.self)
                records[key] = String(decoding: record[(equals + 1)...], as: UTF8.self)
            }
            cursor += length
        }
        return records
    }

    private func gnuLongName(_ reader: ByteRangeReader, at offset: UInt64, size: UInt64) throws -> String {
        guard size > 0, size <= 64 * 1024 else { throw failure("implausible GNU long name of \(size) bytes") }
        let data = try reader.readExactly(at: offset, count: Int(size), what: "GNU long name")
        return String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// Refuses absolute names and `..` components; drops `.` components and a trailing `/`.
    private func safeName(_ raw: String) throws -> String {
        guard !raw.isEmpty else { throw failure("member with an empty name") }
        guard !raw.hasPrefix("/") else {
            throw failure("member '\(raw)' has an absolute path; only relative names are accepted", member: raw)
        }
        let components = raw.split(separator: "/", omittingEmptySubsequences: true)
        guard !components.contains("..") else {
            throw failure("member '\(raw)' contains a '..' component (path escape)", member: raw)
        }
        guard !raw.unicodeScalars.contains(where: { $0.value < 0x20 || $0 == "\\" }) else {
            throw failure("member '\(raw)' contains control characters or backslashes", member: raw)
        }
        let kept = components.filter { $0 != "." }
        guard !kept.isEmpty else { throw failure("member '\(raw)' has no usable name", member: raw) }
        return kept.joined(separator: "/")
    }

    private func failure(_ message: String, member: String? = nil) -> StageError {
        StageError(.badInput, file: url.path, message)
    }
}
