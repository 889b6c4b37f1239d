import Foundation
import Synchronization

/// The qemu-img calls of a chunked copy (``ChunkedCopy``): an empty target created once,
/// then one `convert -n` per window of guest address space, each window a `raw` node with
/// `offset`/`size` over the source's format node and over the target's.
///
/// Measured against `qemu-img dd` (no target offset, no compression) and an NBD export of
/// the target by qemu-storage-daemon (one more process to supervise, and a kill -9 of the
/// daemon leaves it running): see BENCHMARKS.md, "Chunked copy".
extension QemuImg {
    /// Creates the empty target of a chunked copy: qcow2 v3 (zstd when compressed) or a
    /// sparse raw file, `virtualSize` guest bytes.
    func createCopyTarget(_ destination: URL, format: String, virtualSize: UInt64, compress: Bool) async throws {
        var arguments = ["create", "-q", "-f", format]
        if format == "qcow2" { arguments += ["-o", compress ? "compat=1.1,compression_type=zstd" : "compat=1.1"] }
        arguments += [destination.path, String(virtualSize)]
        let command = ExternalCommand(executable, arguments,
                                      limits: .shortTool(.seconds(120), because: "creating an empty image writes only its header"))
        try await command.runChecked(about: destination.path)
    }

    /// Copies one window: guest bytes `offset ..< offset + length` of `source` to the same
    /// addresses of `target`. `targetIsZero`: the window was never written (a fresh chunk),
    /// so zero runs are skipped and stay holes; a chunk being redone after a crash must
    /// write its zeros too.
    /// `supervisor`: our `hyper2kvm`, whose `internal supervise` kills qemu-img within a
    /// second of this process dying (qemu-img ignores SIGPIPE and would finish its window
    /// for nobody, holding the target's lock); nil runs qemu-img directly.
    func copyWindow(source: String, target: String, about file: String, length: UInt64, targetIsZero: Bool,
                    supervisor: String?, progress: @escaping @Sendable (Double) -> Void) async throws {
        var arguments = ["convert", "-p", "-n", "-f", "raw", "-O", "raw"]
        if targetIsZero { arguments.append("--target-is-zero") }
        arguments += [source, target]
        let relay = ChunkProgressRelay(report: progress)
        let command = supervisor.map { ExternalCommand($0, ["internal", "supervise", "--", executable] + arguments, limits: .copying(bytes: length)) }
            ?? ExternalCommand(executable, arguments, limits: .copying(bytes: length))
        let result = try await command.run(about: file, onStdoutChunk: { relay.consume($0) })
        try result.requireSuccess(of: command, about: file)
    }

    /// The guest ranges of `source` (a json: node spec in guest coordinates) that may read
    /// as non-zero, from one `qemu-img map`; nil when the map could not be had whole (the
    /// tool failed, ran past its limit, or printed more than `outputLimit` bytes, which a
    /// crafted image of alternating clusters can make it do). A copy then treats every
    /// window as holding data: the map only saves work, it never decides what is copied.
    func dataRanges(of source: String, about file: String, outputLimit: Int = 8 << 20) async throws -> [Range<UInt64>]? {
        // Bounded like a probe of an untrusted image: past these the map is given up, not the copy.
        let limits = ExternalCommand.Limits(addressSpaceBytes: 1 << 30, cpuSeconds: 30,
                                            wallClock: .init(.seconds(120), blame: .toolFailed,
                                                             because: "a map reads only the image's tables"))
        var command = ExternalCommand(executable, ["map", "--output=json", "-f", "raw", source], limits: limits)
        command.stdoutLimit = outputLimit
        let result: ExternalCommand.Result
        do {
            result = try await command.run(about: file)
        } catch {
            try Task.checkCancellation()
            return nil
        }
        guard result.status == 0, result.stdoutComplete,
              let extents = try? JSONDecoder().decode([MapExtent].self, from: result.stdout) else { return nil }
        return extents.compactMap { extent in
            // `zero`: reads as zeros, whether a hole or allocated zeros (a flat extent's holes
            // are `data` and `zero` both); anything else may not.
            guard !extent.zero, extent.length > 0 else { return nil }
            let end = extent.start.addingReportingOverflow(extent.length)
            return end.overflow ? extent.start..<UInt64.max : extent.start..<end.partialValue
        }
    }

    /// `qemu-img check -r leaks`: frees clusters a killed writer allocated but never linked.
    /// Returns how many leaked clusters were freed.
    func repairLeaks(_ image: String) async throws -> Int {
        let command = ExternalCommand(executable, ["check", "-r", "leaks", "--output=json", "-f", "qcow2", image],
                                      limits: .copying(bytes: 0))
        let result = try await command.run(about: image)
        // 0: clean after the repair; 3: leaks remain (reported, not fatal). Anything else is
        // corruption or a failure, which the caller answers by starting the disk again.
        guard result.status == 0 || result.status == 3 else {
            try result.requireSuccess(of: command, about: image)
            return 0
        }
        let report = try? JSONDecoder().decode(LeakRepairReport.self, from: result.stdout)
        return report?.leaksFixed ?? 0
    }

    /// Unmaps guest bytes `offset ..< offset + length` of a qcow2 image (qemu-io `discard`):
    /// a compressed cluster cannot be written again in place, so a compressed chunk that a
    /// crash interrupted is emptied before it is copied again.
    func discard(_ image: String, offset: UInt64, length: UInt64) async throws {
        let command = ExternalCommand(siblingTool("qemu-io"), ["-f", "qcow2", "-d", "unmap", "-c", "discard \(offset) \(length)", image],
                                      limits: .shortTool(.seconds(600), because: "a discard rewrites only the image's tables"))
        try await command.runChecked(about: image)
    }

    /// `name` beside our qemu-img when it was given as a path, else `name` on PATH.
    func siblingTool(_ name: String) -> String {
        guard executable.contains("/") else { return name }
        return URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent(name).path
    }
}

private struct MapExtent: Decodable {
    var start: UInt64
    var length: UInt64
    var zero: Bool
}

private struct LeakRepairReport: Decodable {
    var leaksFixed: Int?
    enum CodingKeys: String, CodingKey { case leaksFixed = "leaks-fixed" }
}

/// qemu-img's `-p` fractions of one window, passed on as they come (the caller scales them).
private final class ChunkProgressRelay: Sendable {
    private let parser = Mutex(QemuProgressParser())
    private let report: @Sendable (Double) -> Void

    init(report: @escaping @Sendable (Double) -> Void) { self.report = report }

    func consume(_ chunk: Data) {
        let fractions = parser.withLock { $0.consume(String(decoding: chunk, as: UTF8.self)) }
        fractions.forEach(report)
    }
}
