import Foundation

/// Names of the files stages hand to each other through the journal.
public enum StageFiles {
    /// What the probe found (`ProbeReport`).
    public static let probe = "probe.json"
    /// The VM as the source describes it (`VMDescription`).
    public static let vm = "vm.json"
    /// What the guest-fix stage did (`GuestFixReport`).
    public static let fixReport = "fix.json"
    public static let domainXML = "domain.xml"
    public static let metadata = "metadata.json"
    public static let checksums = "SHA256SUMS"

    /// Overlay on which the guest fixes of disk `id` were made (the source stays untouched).
    public static func overlay(diskID: String) -> String { "overlay-\(diskID).qcow2" }
    /// Converted disk `id`, before publication.
    public static func convertedDisk(diskID: String, format: String) -> String { "disk-\(diskID).\(format)" }
    public static func isConvertedDisk(_ name: String) -> Bool { name.hasPrefix("disk-") }
}

enum StageJSON {
    static func write<T: Encodable>(_ value: T, to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data: Data
        do {
            data = try encoder.encode(value)
        } catch {
            throw StageError(.ioFailed, file: url.path, "cannot encode: \(error.localizedDescription)")
        }
        // Written and synced like every other output, so no file depends on what Foundation
        // happens to do (and the power-loss test's unsafe build covers these files too).
        try DurableFile.write(data, to: url)
    }

    static func read<T: Decodable>(_ type: T.Type, from url: URL) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(contentsOf: url))
        } catch {
            throw StageError(.ioFailed, file: url.path, "cannot read recorded stage output: \(error)")
        }
    }
}

/// What the probe stage records about the source.
public struct ProbeReport: Codable, Sendable, Equatable {
    public var kind: InputKind
    public var sizeBytes: UInt64
    public init(kind: InputKind, sizeBytes: UInt64) {
        self.kind = kind
        self.sizeBytes = sizeBytes
    }
}

extension VMDescription {
    /// The disk that boots: lowest boot-order hint, else the first disk.
    public var bootDiskIndex: Int {
        let hinted = disks.enumerated().compactMap { index, disk in disk.bootOrderHint.map { (index, $0) } }
        return hinted.min { $0.1 < $1.1 }?.0 ?? 0
    }

    /// Disks with the boot disk first, the rest in source order.
    public var disksInBootOrder: [SourceDisk] {
        guard !disks.isEmpty else { return [] }
        var ordered = disks
        let boot = ordered.remove(at: bootDiskIndex)
        return [boot] + ordered
    }
}
