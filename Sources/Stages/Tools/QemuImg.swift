import Foundation
import Synchronization

/// A typed wrapper over the `qemu-img` command, the only thing in the pipeline that reads or
/// writes image formats.
///
/// Images are named by a qemu *image spec*: a plain absolute path, or a `json:{…}` spec
/// (an OVA member read in place through a `raw` driver with `offset`/`size`). A relative
/// path is never passed, because qemu would read `name:rest` as a protocol prefix.
///
/// Choices made by measurement (2 cores, local ext4, 512 MiB half-random vmdk → qcow2;
/// the same half-random image `bench/convert` uses): `-W` (out-of-order writes) and `-m 16` moved the wall time by
/// less than the run-to-run noise (0.40–0.83 s for the same command), with and without
/// `-c`, so the defaults are kept: in-order writes give a sequentially laid out output.
public struct QemuImg: Sendable {
    /// zstd level qemu uses for qcow2 compressed clusters. qemu 7.2 creates its zstd
    /// context with `ZSTD_createCCtx()` and sets no level, so zstd's default (3) applies;
    /// `qemu-img create -f qcow2 -o help` offers `compression_type` but no level.
    public static let zstdLevel = 3

    public var executable: String
    /// Limits for commands that parse an untrusted image's metadata (`info`, `check`).
    public var probeLimits: ExternalCommand.Limits?

    public init(executable: String = "qemu-img", probeLimits: ExternalCommand.Limits? = .untrustedProbe) {
        self.executable = executable
        self.probeLimits = probeLimits
    }

    /// What a conversion actually did, for metadata.
    public struct ConversionSummary: Sendable, Equatable {
        /// `zstd` when clusters were compressed, nil otherwise.
        public var compressionType: String?
        /// The zstd level qemu applied (see ``QemuImg/zstdLevel``), nil when not compressed.
        public var compressionLevel: Int?
        /// Set when the requested level could not be honoured, saying why.
        public var note: String?
    }

    /// Converts `source` into a new image at `destination`, reading through any backing
    /// chain, so a snapshot chain comes out flattened into one standalone image.
    ///
    /// - Parameters:
    ///   - source: image spec (absolute path or `json:{…}`).
    ///   - sourceFormat: qemu driver of the source: vmdk, vpc, vhdx, raw, qcow2.
    ///   - destination: the file to create; an existing file is overwritten.
    ///   - outputFormat: `qcow2` (written as qcow2 v3, `compat=1.1`) or `raw`.
    ///   - compress: zstd-compressed clusters; qcow2 only.
    ///   - compressLevel: the requested zstd level. qemu-img cannot set it (see
    ///     ``zstdLevel``): any other value is reported in the summary's `note`.
    ///   - limits: the wall-clock bound of the copy, proportional to its size
    ///     (`ExternalCommand.Limits.copying(bytes:)`); nil only where the caller bounds it.
    ///   - progress: called with increasing fractions in 0…1, the last one exactly 1.
    /// - Throws: `StageError(.noSpace)` when the destination's filesystem fills up,
    ///   `.toolFailed` with qemu-img's message otherwise, `.badInput` for compression
    ///   requested on a non-qcow2 output.
    @discardableResult
    public func convert(from source: String, sourceFormat: String, to destination: URL, outputFormat: String,
                        compress: Bool = false, compressLevel: Int = QemuImg.zstdLevel,
                        limits: ExternalCommand.Limits? = nil,
                        progress: @escaping @Sendable (Double) -> Void = { _ in }) async throws -> ConversionSummary {
        if compress && outputFormat != "qcow2" {
            throw StageError(.badInput, file: destination.path,
                             "compression needs qcow2 output, not \(outputFormat)")
        }
        var arguments = ["convert", "-p", "-f", sourceFormat, "-O", outputFormat]
        var summary = ConversionSummary()
        if outputFormat == "qcow2" {
            if compress {
                arguments += ["-c", "-o", "compat=1.1,compression_type=zstd"]
                summary.compressionType = "zstd"
                summary.compressionLevel = Self.zstdLevel
                if compressLevel != Self.zstdLevel {
                    summary.note = "compress_level \(compressLevel) requested, but qemu-img sets no zstd level: "
                        + "clusters were compressed at zstd's default level \(Self.zstdLevel)"
                }
            } else {
                arguments += ["-o", "compat=1.1"]
            }
        }
        arguments += [source, destination.path]

        let relay = ProgressRelay(report: progress)
        let command = ExternalCommand(executable, arguments, limits: limits)
        let result = try await command.run(about: destination.path, onStdoutChunk: { relay.consume($0) })
        try result.requireSuccess(of: command, about: destination.path)
        relay.finish()
        return summary
    }

    /// Creates a qcow2 overlay at `overlay` whose reads fall through to `backing`, so guest
    /// fixes are written to the overlay and the source is never modified.
    public func createOverlay(backing: String, backingFormat: String, at overlay: URL) async throws {
        let command = ExternalCommand(executable, ["create", "-q", "-f", "qcow2", "-o", "compat=1.1",
                                                   "-b", backing, "-F", backingFormat, overlay.path],
                                      // create opens the backing chain to learn its size: never for long.
                                      limits: .shortTool(.seconds(120), because: "creating an overlay reads only image headers"))
        try await command.runChecked(about: overlay.path)
    }

    /// `qemu-img info --output=json`, under ``probeLimits`` (the image may be hostile).
    public func info(_ image: String, format: String? = nil) async throws -> QemuImageInfo {
        var arguments = ["info", "--output=json"]
        if let format { arguments += ["-f", format] }
        arguments.append(image)
        let command = ExternalCommand(executable, arguments, limits: probeLimits)
        let result = try await command.runChecked(about: image)
        do {
            return try JSONDecoder().decode(QemuImageInfo.self, from: result.stdout)
        } catch {
            throw StageError(.toolFailed, file: image, "qemu-img info printed JSON this program cannot read: \(error)")
        }
    }

    /// The guest size of `image` as a whole-image convert would give its target: what
    /// `qemu-img measure -O raw` requires, which qemu takes from the opened top node.
    /// Unlike `info`, which opens no backing file and so refuses a spec that names one
    /// (`does not support the option 'backing.driver'`), measure opens the whole chain.
    public func guestSize(_ image: String, format: String) async throws -> UInt64 {
        let command = ExternalCommand(executable, ["measure", "--output=json", "-O", "raw", "-f", format, image], limits: probeLimits)
        let result = try await command.runChecked(about: image)
        guard let measured = try? JSONDecoder().decode(RawMeasure.self, from: result.stdout) else {
            throw StageError(.toolFailed, file: image, "qemu-img measure printed JSON this program cannot read: \(result.stdoutText)")
        }
        return measured.required
    }

    private struct RawMeasure: Decodable { var required: UInt64 }

    /// Whether two images have the same guest-visible content. Not strict: a hole and
    /// written zeros count as equal, and a larger image may have a zero tail, which is
    /// right across formats (vpc rounds sizes to its geometry).
    public func compare(_ first: String, format firstFormat: String,
                        _ second: String, format secondFormat: String) async throws -> Bool {
        let command = ExternalCommand(executable, ["compare", "-f", firstFormat, "-F", secondFormat, first, second])
        let result = try await command.run(about: first)
        switch result.status {
        case 0: return true
        case 1: return false
        default:
            try result.requireSuccess(of: command, about: first)
            return false
        }
    }

    /// The outcome of `qemu-img check`.
    public enum CheckOutcome: Sendable, Equatable {
        case clean
        /// Leaked clusters waste space but lose no data.
        case leaks(Int)
        case corrupt(errors: Int)
        /// The format has no consistency check (vpc, raw).
        case unsupported
    }

    /// Checks an image's metadata for consistency, without repairing anything.
    public func check(_ image: String, format: String) async throws -> CheckOutcome {
        let command = ExternalCommand(executable, ["check", "--output=json", "-f", format, image], limits: probeLimits)
        let result = try await command.run(about: image)
        let report = try? JSONDecoder().decode(CheckReport.self, from: result.stdout)
        switch result.status {
        case 0: return .clean
        case 2: return .corrupt(errors: report?.corruptions ?? report?.checkErrors ?? 1)
        case 3: return .leaks(report?.leaks ?? 0)
        case 63: return .unsupported
        default:
            try result.requireSuccess(of: command, about: image)
            return .clean
        }
    }

    /// The version line of qemu-img, e.g. `7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)`, for metadata.
    public func version() async throws -> String {
        let command = ExternalCommand(executable, ["--version"], limits: .shortTool(.seconds(30), because: "printing a version"))
        let result = try await command.runChecked()
        let firstLine = result.stdoutText.split(separator: "\n").first.map(String.init) ?? ""
        let prefix = "qemu-img version "
        guard firstLine.hasPrefix(prefix) else {
            throw StageError(.toolFailed, file: executable, "unexpected version output: \(firstLine)")
        }
        return String(firstLine.dropFirst(prefix.count))
    }
}

/// The fields of `qemu-img info --output=json` the pipeline uses.
public struct QemuImageInfo: Decodable, Sendable, Equatable {
    public var format: String
    public var virtualSize: UInt64
    public var actualSize: UInt64?
    public var clusterSize: UInt64?
    public var dirtyFlag: Bool?
    /// Set when the image has a backing file (a snapshot chain or an overlay).
    public var backingFilename: String?
    public var backingFormat: String?
    /// qcow2: `zlib` or `zstd`.
    public var compressionType: String?
    /// qcow2: `0.10` (v2) or `1.1` (v3).
    public var compat: String?
    /// vmdk: `monolithicSparse`, `streamOptimized`, …
    public var createType: String?

    private enum CodingKeys: String, CodingKey {
        case format
        case virtualSize = "virtual-size"
        case actualSize = "actual-size"
        case clusterSize = "cluster-size"
        case dirtyFlag = "dirty-flag"
        case backingFilename = "backing-filename"
        case backingFormat = "backing-filename-format"
        case formatSpecific = "format-specific"
    }

    private struct FormatSpecific: Decodable {
        struct Details: Decodable {
            var compressionType: String?
            var compat: String?
            var createType: String?
            enum CodingKeys: String, CodingKey {
                case compressionType = "compression-type"
                case compat
                case createType = "create-type"
            }
        }
        var data: Details?
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        format = try container.decode(String.self, forKey: .format)
        virtualSize = try container.decode(UInt64.self, forKey: .virtualSize)
        actualSize = try container.decodeIfPresent(UInt64.self, forKey: .actualSize)
        clusterSize = try container.decodeIfPresent(UInt64.self, forKey: .clusterSize)
        dirtyFlag = try container.decodeIfPresent(Bool.self, forKey: .dirtyFlag)
        backingFilename = try container.decodeIfPresent(String.self, forKey: .backingFilename)
        backingFormat = try container.decodeIfPresent(String.self, forKey: .backingFormat)
        let details = try container.decodeIfPresent(FormatSpecific.self, forKey: .formatSpecific)?.data
        compressionType = details?.compressionType
        compat = details?.compat
        createType = details?.createType
    }
}

private struct CheckReport: Decodable {
    var checkErrors: Int?
    var corruptions: Int?
    var leaks: Int?
    enum CodingKeys: String, CodingKey {
        case checkErrors = "check-errors"
        case corruptions
        case leaks
    }
}

/// Turns qemu-img's `-p` output (`    (12.34/100%)\r`, possibly split across pipe reads)
/// into fractions.
struct QemuProgressParser {
    private var pending = ""

    /// Feeds a chunk of stdout; returns the fractions completed in it, in order.
    mutating func consume(_ text: String) -> [Double] {
        pending += text
        var fractions: [Double] = []
        while let close = pending.range(of: "/100%)") {
            let head = pending[..<close.lowerBound]
            if let open = head.lastIndex(of: "("),
               let percent = Double(head[head.index(after: open)...].trimmingCharacters(in: .whitespaces)) {
                fractions.append(min(max(percent / 100, 0), 1))
            }
            pending = String(pending[close.upperBound...])
        }
        // Without a closing marker only the tail can still become a report; keep it small.
        if pending.count > 64 { pending = String(pending.suffix(64)) }
        return fractions
    }
}

/// Forwards parsed progress to the caller, strictly increasing, from the pipe reader thread.
private final class ProgressRelay: Sendable {
    private struct State {
        var parser = QemuProgressParser()
        var last = -1.0
    }
    private let state = Mutex(State())
    private let report: @Sendable (Double) -> Void

    init(report: @escaping @Sendable (Double) -> Void) { self.report = report }

    func consume(_ chunk: Data) {
        let fresh: [Double] = state.withLock { state in
            var increasing: [Double] = []
            for fraction in state.parser.consume(String(decoding: chunk, as: UTF8.self)) where fraction > state.last {
                state.last = fraction
                increasing.append(fraction)
            }
            return increasing
        }
        fresh.forEach(report)
    }

    /// qemu-img ends on 100% when it completes, but the final chunk can arrive after the
    /// exit is noticed; make sure the caller sees exactly one 1.0.
    func finish() {
        let needsFinal = state.withLock { state in
            defer { state.last = 1 }
            return state.last < 1
        }
        if needsFinal { report(1) }
    }
}
