import Foundation

/// The rule one link of a VMDK snapshot chain must keep: the child's `parentCID` is the
/// parent's `CID`. VMware changes a disk's CID at its first write after it was opened, so a
/// parent whose CID differs was written after the snapshot was taken (or is another disk of
/// the same name): the child's blocks would be laid over content they were not taken from,
/// and the flattened disk would be silently corrupt.
enum VMDKChainLink {
    /// The `parentCID` of a snapshot descriptor, as 8 hex digits in lower case.
    /// - Throws: when the descriptor names a parent without a usable `parentCID`.
    static func parentCID(of descriptor: VMDKDescriptor, file: String) throws -> String {
        guard let value = descriptor.parentCID, let cid = normalisedCID(value), cid != "ffffffff" else {
            throw StageError(.badInput, file: file,
                             "snapshot names parent \(descriptor.parentFileNameHint.map { "'\($0)'" } ?? "") but has no parentCID (\(descriptor.parentCID.map { "'\($0)'" } ?? "none")): the link to its parent cannot be checked")
        }
        return cid
    }

    /// Checks that `parent`'s CID is `expectedCID`.
    static func checkParent(_ parent: PinnedFile, expectedCID: String, child: String) throws {
        let name = URL(fileURLWithPath: parent.path).lastPathComponent
        guard let descriptor = try descriptor(of: parent) else {
            throw StageError(.badInput, file: child, "parent \(name) has no descriptor, so no CID: it is not the disk this snapshot was taken from")
        }
        guard let found = descriptor.cid.flatMap(normalisedCID), found == expectedCID else {
            throw StageError(.badInput, file: child,
                             "CID mismatch: the snapshot's parentCID is \(expectedCID) but its parent \(name) has CID \(descriptor.cid ?? "none"); the parent changed after the snapshot was taken, or it is another disk")
        }
    }

    /// The descriptor of a VMDK file: its text, or the one embedded in a sparse extent.
    static func descriptor(of file: PinnedFile) throws -> VMDKDescriptor? {
        let reader = try file.reader()
        if try reader.read(at: 0, count: 4).hasPrefix(SparseVMDKLayout.magic) {
            let layout = try SparseVMDKLayout(reading: reader)
            return try layout.embeddedDescriptor(in: reader).map { try VMDKDescriptor.parse($0, file: file.path) }
        }
        return try VMDKDescriptor.load(from: reader)
    }

    /// `0A1B2C3D` → `0a1b2c3d`; nil unless 1 to 8 hex digits (VMware writes a 32-bit CID in hex).
    static func normalisedCID(_ text: String) -> String? {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        guard (1...8).contains(trimmed.count), trimmed.allSatisfy(\.isHexDigit), let value = UInt32(trimmed, radix: 16) else {
            return nil
        }
        return String(format: "%08x", value)
    }
}

extension VMDKDescriptor {
    /// The `parentFileNameHint` of a VMDK file (text descriptor or sparse extent), for grouping a
    /// snapshot chain in the queue; nil when it names none or cannot be read (the probe then
    /// reads it properly and says what is wrong).
    public static func parentNameHint(of url: URL) -> String? {
        guard let reader = try? ByteRangeReader(path: url.path), reader.size > 0 else { return nil }
        let descriptor: VMDKDescriptor?
        if (try? reader.read(at: 0, count: 4).hasPrefix(SparseVMDKLayout.magic)) == true {
            descriptor = (try? SparseVMDKLayout(reading: reader)).flatMap { layout in
                (try? layout.embeddedDescriptor(in: reader)).flatMap { $0 }.flatMap { try? parse($0, file: url.path) }
            }
        } else if reader.size <= UInt64(maximumTextBytes) {
            descriptor = try? load(from: reader)
        } else {
            descriptor = nil
        }
        guard let hint = descriptor?.parentFileNameHint, !hint.isEmpty else { return nil }
        return hint
    }
}
