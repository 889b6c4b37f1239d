import Foundation
import TestSupport

/// A Hyper-V export folder written for a test: `<VM>/Virtual Hard Disks/base.vhdx` (made by
/// qemu-img from a raw image kept as the reference), checkpoints written by
/// `scripts/make-differencing-vhdx`, and a `.vmcx` of random bytes in `Virtual Machines`.
/// `expected` follows every write the chain describes, so the flattened disk must equal it.
struct HyperVExportFixture {
    static let sizeMiB = 8
    let folder: URL
    let disks: URL
    let work: URL
    /// Where the bytes of each write are kept for the generator (not in `work`, which the
    /// tests expect to hold only what the reader wrote).
    let payloads: URL
    var expected: Data

    /// `partitionTable`: a `sfdisk` script laid on the base first (nil: random bytes only).
    init(in scratch: Scratch, name: String = "Web01", partitionTable: String? = nil) async throws {
        folder = scratch.url.appendingPathComponent(name)
        disks = folder.appendingPathComponent("Virtual Hard Disks")
        work = scratch.url.appendingPathComponent("work")
        payloads = scratch.url.appendingPathComponent("payloads")
        let machines = folder.appendingPathComponent("Virtual Machines")
        for directory in [disks, machines, work, payloads] {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        }
        try Self.random(4096).write(to: machines.appendingPathComponent("2D5A3C1E-0000-4B7D-9D3E-1C2B3A4D5E6F.vmcx"))
        // Random content in the first 6 MiB; the rest stays zero (a sparse tail).
        var base = Self.random(6 << 20)
        base.append(Data(count: (Self.sizeMiB - 6) << 20))
        let raw = scratch.url.appendingPathComponent("base.raw")
        try base.write(to: raw)
        if let partitionTable {
            try await sh(["bash", "-c", "printf '%s' \"$1\" | sfdisk --quiet \"$2\"", "sfdisk", partitionTable, raw.path])
            base = try Data(contentsOf: raw)
        }
        try await sh(["qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", "subformat=dynamic,block_size=1M",
                      raw.path, disks.appendingPathComponent("base.vhdx").path])
        expected = base
    }

    static func random(_ count: Int) -> Data {
        var words = (0..<((count + 7) / 8)).map { _ in UInt64.random(in: .min ... .max) }
        return Data(bytes: &words, count: count)
    }

    /// A write the checkpoint will hold: `count` random bytes at `offset`.
    struct Write {
        var offset: Int
        var bytes: Data
        init(_ offset: Int, _ count: Int) {
            self.offset = offset
            bytes = HyperVExportFixture.random(count)
        }
    }

    /// Writes checkpoint `name` over `parent` (names inside `Virtual Hard Disks`), with
    /// `writes` and blocks set to ZERO / UNMAPPED, and records them in `expected`.
    /// `extra`: more generator options (hostile variants), which the expectation ignores.
    @discardableResult
    mutating func checkpoint(_ name: String, parent: String, writes: [Write] = [], zeroBlocks: [Int] = [],
                             unmapBlocks: [Int] = [], extra: [String] = []) async throws -> URL {
        var arguments = [Repository.script("make-differencing-vhdx"), "--parent", disks.appendingPathComponent(parent).path,
                         "--out", disks.appendingPathComponent(name).path]
        for (index, write) in writes.enumerated() {
            let payload = payloads.appendingPathComponent("\(name)-write\(index).bin")
            try write.bytes.write(to: payload)
            arguments += ["--write", "\(write.offset):\(payload.path)"]
            expected.replaceSubrange(write.offset..<(write.offset + write.bytes.count), with: write.bytes)
        }
        for block in zeroBlocks + unmapBlocks {
            expected.replaceSubrange((block << 20)..<((block + 1) << 20), with: Data(count: 1 << 20))
        }
        arguments += zeroBlocks.flatMap { ["--zero-block", String($0)] } + unmapBlocks.flatMap { ["--unmap-block", String($0)] }
        try await sh(["python3"] + arguments + extra)
        return disks.appendingPathComponent(name)
    }
}
