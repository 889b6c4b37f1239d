import Foundation
import Stages

/// Reads the file tree of an ISO 9660 image (a virtio-win ISO) on the host, so the drivers
/// can be copied into the guest without attaching the ISO to the job's appliance (an extra
/// drive would shift nothing, but Linux fixes enumerate devices and must not see it).
///
/// Names come from the Joliet tree when there is one, else from Rock Ridge `NM` entries,
/// else from the plain ISO names (version `;1` and a trailing dot removed). Every offset is
/// bounds-checked: the image is operator-supplied but parsed by the daemon.
struct ISO9660Image {
    struct Entry: Equatable {
        /// "/"-separated, as the image spells it.
        var path: String
        var extent: UInt32
        var size: UInt32
    }

    static let sectorSize = 2048
    private static let maxDepth = 16
    private static let maxEntries = 200_000
    /// All directory extents together: a virtio-win ISO has a few MiB of them; a crafted tree of
    /// many distinct 64 MiB directories must not make the daemon read gigabytes.
    private static let maxDirectoryBytes: UInt64 = 256 * 1024 * 1024
    /// A driver file is a few MiB; the size field is the image's word, so it is capped before allocating.
    static let maxFileBytes: UInt32 = 512 * 1024 * 1024

    let url: URL
    /// Regular files only.
    let files: [Entry]

    init(url: URL) throws {
        self.url = url
        let handle: FileHandle
        do { handle = try FileHandle(forReadingFrom: url) } catch {
            throw StageError(.ioFailed, file: url.path, "cannot open the virtio-win ISO: \(error.localizedDescription)")
        }
        defer { try? handle.close() }
        let reader = SectorReader(handle: handle, path: url.path)
        let (root, joliet) = try Self.rootDirectory(reader)
        var files: [Entry] = []
        var visited: Set<UInt32> = []
        var directoryBytes: UInt64 = 0
        try Self.walk(reader, directory: root, prefix: "", joliet: joliet, depth: 0, visited: &visited,
                      directoryBytes: &directoryBytes, into: &files)
        self.files = files
    }

    /// The bytes of one file of the image.
    func read(_ entry: Entry) throws -> Data {
        guard entry.size <= Self.maxFileBytes else {
            throw StageError(.badInput, file: url.path, "the ISO file '\(entry.path)' claims \(entry.size) bytes, more than a driver file can be")
        }
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        return try SectorReader(handle: handle, path: url.path)
            .read(at: UInt64(entry.extent) * UInt64(Self.sectorSize), count: Int(entry.size))
    }

    // MARK: - Parsing

    struct DirectoryRecord {
        var extent: UInt32
        var size: UInt32
        var isDirectory: Bool
        var isMultiExtent: Bool
        var rawName: [UInt8]
        var systemUse: [UInt8]
    }

    private struct SectorReader {
        let handle: FileHandle
        let path: String

        func read(at offset: UInt64, count: Int) throws -> Data {
            do {
                try handle.seek(toOffset: offset)
                let data = try handle.read(upToCount: count) ?? Data()
                guard data.count == count else {
                    throw StageError(.badInput, file: path, "the ISO image is truncated (wanted \(count) bytes at offset \(offset))")
                }
                return data
            } catch let error as StageError {
                throw error
            } catch {
                throw StageError(.ioFailed, file: path, "reading the ISO image failed: \(error.localizedDescription)")
            }
        }
    }

    /// The root directory record of the Joliet tree if present, else of the primary tree.
    private static func rootDirectory(_ reader: SectorReader) throws -> (DirectoryRecord, joliet: Bool) {
        var primary: DirectoryRecord?
        for sector in 16..<64 {
            let descriptor = [UInt8](try reader.read(at: UInt64(sector * sectorSize), count: sectorSize))
            guard descriptor[1...5].elementsEqual("CD001".utf8) else {
                throw StageError(.badInput, file: reader.path, "not an ISO 9660 image (no volume descriptor at sector \(sector))")
            }
            switch descriptor[0] {
            case 1:
                primary = parseRecord(descriptor, at: 156)
            case 2 where isJolietEscape(descriptor[88..<91]):
                if let root = parseRecord(descriptor, at: 156) { return (root, true) }
            case 255:
                guard let primary else { break }
                return (primary, false)
            default:
                continue
            }
        }
        throw StageError(.badInput, file: reader.path, "no ISO 9660 primary volume descriptor found")
    }

    private static func isJolietEscape(_ bytes: ArraySlice<UInt8>) -> Bool {
        let escape = Array(bytes)
        return escape.count == 3 && escape[0] == 0x25 && escape[1] == 0x2F && [0x40, 0x43, 0x45].contains(escape[2])
    }

    static func parseRecord(_ bytes: [UInt8], at offset: Int) -> DirectoryRecord? {
        guard offset + 33 <= bytes.count else { return nil }
        let length = Int(bytes[offset])
        let nameLength = Int(bytes[offset + 32])
        guard length >= 33 + nameLength, offset + length <= bytes.count else { return nil }
        let flags = bytes[offset + 25]
        let nameStart = offset + 33
        var systemUseStart = nameStart + nameLength
        if nameLength % 2 == 0 { systemUseStart += 1 }
        return DirectoryRecord(extent: littleEndian32(bytes, offset + 2), size: littleEndian32(bytes, offset + 10),
                               isDirectory: flags & 0x02 != 0, isMultiExtent: flags & 0x80 != 0,
                               rawName: Array(bytes[nameStart..<nameStart + nameLength]),
                               systemUse: systemUseStart < offset + length ? Array(bytes[systemUseStart..<offset + length]) : [])
    }

    private static func littleEndian32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[offset + $1]) << (8 * $1) }
    }

    private static func walk(_ reader: SectorReader, directory: DirectoryRecord, prefix: String, joliet: Bool, depth: Int,
                             visited: inout Set<UInt32>, directoryBytes: inout UInt64, into files: inout [Entry]) throws {
        guard depth <= maxDepth, visited.insert(directory.extent).inserted else {
            throw StageError(.badInput, file: reader.path, "the ISO directory tree is too deep or loops (at '\(prefix)')")
        }
        guard directory.size <= 64 * 1024 * 1024 else {
            throw StageError(.badInput, file: reader.path, "the ISO directory '\(prefix)' claims \(directory.size) bytes")
        }
        directoryBytes += UInt64(directory.size)
        guard directoryBytes <= maxDirectoryBytes else {
            throw StageError(.badInput, file: reader.path, "the ISO directories add up to more than \(maxDirectoryBytes) bytes")
        }
        let bytes = [UInt8](try reader.read(at: UInt64(directory.extent) * UInt64(sectorSize), count: Int(directory.size)))
        var offset = 0
        while offset < bytes.count {
            let length = Int(bytes[offset])
            if length == 0 {
                // Records never cross a sector boundary; the rest of this sector is padding.
                offset = (offset / sectorSize + 1) * sectorSize
                continue
            }
            guard let record = parseRecord(bytes, at: offset) else {
                throw StageError(.badInput, file: reader.path, "a damaged directory record in the ISO directory '\(prefix)'")
            }
            offset += length
            // "." and ".." are the single bytes 0 and 1.
            if record.rawName.count == 1 && record.rawName[0] <= 1 { continue }
            let name = decodeName(record, joliet: joliet)
            guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else { continue }
            let path = prefix.isEmpty ? name : prefix + "/" + name
            if record.isDirectory {
                try walk(reader, directory: record, prefix: path, joliet: joliet, depth: depth + 1, visited: &visited,
                         directoryBytes: &directoryBytes, into: &files)
            } else if !record.isMultiExtent {
                files.append(Entry(path: path, extent: record.extent, size: record.size))
            }
            guard files.count <= maxEntries else {
                throw StageError(.badInput, file: reader.path, "the ISO holds more than \(maxEntries) files")
            }
        }
    }

    static func decodeName(_ record: DirectoryRecord, joliet: Bool) -> String {
        var name: String
        if joliet {
            var units: [UInt16] = []
            var index = 0
            while index + 1 < record.rawName.count {
                units.append(UInt16(record.rawName[index]) << 8 | UInt16(record.rawName[index + 1]))
                index += 2
            }
            name = String(decoding: units, as: UTF16.self)
        } else if let rockRidge = rockRidgeName(record.systemUse) {
            return rockRidge
        } else {
            name = String(decoding: record.rawName, as: UTF8.self)
        }
        if let semicolon = name.lastIndex(of: ";") { name = String(name[..<semicolon]) }
        if !record.isDirectory, name.hasSuffix(".") { name.removeLast() }
        return name
    }

    /// The Rock Ridge alternate name (`NM` entries, possibly continued) in a record's
    /// system use area.
    static func rockRidgeName(_ systemUse: [UInt8]) -> String? {
        var offset = 0
        var name: [UInt8] = []
        var found = false
        while offset + 4 <= systemUse.count {
            let length = Int(systemUse[offset + 2])
            guard length >= 4, offset + length <= systemUse.count else { break }
            if systemUse[offset] == UInt8(ascii: "N"), systemUse[offset + 1] == UInt8(ascii: "M"), length >= 5 {
                let flags = systemUse[offset + 4]
                // Flags 2/4 mean "." / ".."; they carry no name.
                if flags & 0x06 == 0 {
                    name += systemUse[(offset + 5)..<(offset + length)]
                    found = true
                }
            }
            offset += length
        }
        return found ? String(decoding: name, as: UTF8.self) : nil
    }
}
