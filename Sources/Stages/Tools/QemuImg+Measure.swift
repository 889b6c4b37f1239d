import Foundation

/// qemu's own estimate of what a conversion writes, asked before the copy starts.
extension QemuImg {
    /// The fields of `qemu-img measure --output=json`.
    public struct Measurement: Decodable, Sendable, Equatable {
        /// Bytes the output takes for the source's allocated data plus the format's metadata.
        public var required: UInt64
        /// Bytes the output would take with every cluster allocated.
        public var fullyAllocated: UInt64

        public init(required: UInt64, fullyAllocated: UInt64) {
            self.required = required
            self.fullyAllocated = fullyAllocated
        }

        private enum CodingKeys: String, CodingKey {
            case required
            case fullyAllocated = "fully-allocated"
        }
    }

    /// `qemu-img measure` of converting `source` into `outputFormat`, with the options
    /// ``convert(from:sourceFormat:to:outputFormat:compress:compressLevel:progress:)`` uses,
    /// under ``probeLimits``: it opens the untrusted image and walks its allocation.
    ///
    /// qemu 7.2 does not count compression (`required` is the uncompressed size, an upper
    /// bound); for `raw` output `required` is the whole virtual size, holes included.
    ///
    /// - Parameter source: image spec, a path or `json:{…}`, exactly as `convert` takes it.
    public func measure(_ source: String, sourceFormat: String, outputFormat: String,
                        compress: Bool = false) async throws -> Measurement {
        var arguments = ["measure", "--output=json", "-O", outputFormat]
        if outputFormat == "qcow2" {
            arguments += ["-o", compress ? "compat=1.1,compression_type=zstd" : "compat=1.1"]
        }
        arguments += ["-f", sourceFormat, source]
        let command = ExternalCommand(executable, arguments, limits: probeLimits)
        let result = try await command.runChecked(about: source)
        do {
            return try JSONDecoder().decode(Measurement.self, from: result.stdout)
        } catch {
            throw StageError(.toolFailed, file: source, "qemu-img measure printed JSON this program cannot read: \(error)")
        }
    }
}
