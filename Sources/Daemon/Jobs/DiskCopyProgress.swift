import Foundation

/// One disk's copy as `status` shows it: bytes done and total, the rate of the current run
/// of the copy and the time left at that rate. Read from convert's chunk checkpoints in the
/// journal (one write per chunk, so the journal's write rate stays bounded whatever the
/// disk's speed); chunk-granular by design.
public struct DiskCopyProgress: Codable, Sendable, Equatable {
    public var disk: String
    public var bytesDone: UInt64
    public var bytesTotal: UInt64
    /// Bytes per second since this run of the copy started; nil before its first chunk.
    public var bytesPerSecond: Double?
    /// Seconds left at that rate; nil without a rate.
    public var etaSeconds: Double?

    enum CodingKeys: String, CodingKey {
        case disk
        case bytesDone = "bytes_done"
        case bytesTotal = "bytes_total"
        case bytesPerSecond = "bytes_per_second"
        case etaSeconds = "eta_seconds"
    }

    /// The fields of convert's checkpoint this report reads (see ChunkedCopy in Stages).
    private struct Checkpoint: Decodable {
        var virtualSize: UInt64
        var chunkBytes: UInt64
        var chunksDone: Int
        var runStartedAt: Double
        var runStartChunks: Int
        var savedAt: Double
    }

    static let namePrefix = "copy "

    /// The progress in a checkpoint named `copy <disk>`; nil for any other checkpoint or one
    /// this version cannot read.
    public static func from(name: String, value: String) -> DiskCopyProgress? {
        guard name.hasPrefix(namePrefix),
              let saved = try? JSONDecoder().decode(Checkpoint.self, from: Data(value.utf8)) else { return nil }
        func bytes(_ chunks: Int) -> UInt64 {
            let product = UInt64(max(chunks, 0)).multipliedReportingOverflow(by: saved.chunkBytes)
            return product.overflow ? saved.virtualSize : min(product.partialValue, saved.virtualSize)
        }
        let done = bytes(saved.chunksDone)
        var progress = DiskCopyProgress(disk: String(name.dropFirst(namePrefix.count)), bytesDone: done,
                                        bytesTotal: saved.virtualSize, bytesPerSecond: nil, etaSeconds: nil)
        let elapsed = saved.savedAt - saved.runStartedAt
        let copied = done - min(bytes(saved.runStartChunks), done)
        if elapsed > 0, copied > 0 {
            let rate = Double(copied) / elapsed
            progress.bytesPerSecond = rate
            progress.etaSeconds = Double(saved.virtualSize - done) / rate
        }
        return progress
    }

    /// "disk-disk0.qcow2: 2.0 of 4.0 GiB, 180 MiB/s, about 12 s left".
    public var line: String {
        func gib(_ bytes: UInt64) -> String { String(format: "%.1f", Double(bytes) / Double(1 << 30)) }
        var text = "\(disk): \(gib(bytesDone)) of \(gib(bytesTotal)) GiB"
        if let bytesPerSecond { text += String(format: ", %.0f MiB/s", bytesPerSecond / Double(1 << 20)) }
        if let etaSeconds { text += ", about \(Int(etaSeconds.rounded())) s left" }
        return text
    }
}
