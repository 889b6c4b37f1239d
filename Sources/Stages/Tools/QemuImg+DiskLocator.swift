import Foundation

/// The same operations named by a `DiskLocator`: its `qemuImageSpec` (a path, or a `json:`
/// spec for an archive member read in place) and its format.
extension QemuImg {
    @discardableResult
    public func convert(from source: DiskLocator, to destination: URL, outputFormat: String,
                        compress: Bool = false, compressLevel: Int = QemuImg.zstdLevel,
                        progress: @escaping @Sendable (Double) -> Void = { _ in }) async throws -> ConversionSummary {
        try await convert(from: source.qemuImageSpec, sourceFormat: source.format, to: destination,
                          outputFormat: outputFormat, compress: compress, compressLevel: compressLevel, progress: progress)
    }

    public func createOverlay(backing: DiskLocator, at overlay: URL) async throws {
        try await createOverlay(backing: backing.qemuImageSpec, backingFormat: backing.format, at: overlay)
    }

    public func info(_ image: DiskLocator) async throws -> QemuImageInfo {
        try await info(image.qemuImageSpec, format: image.format)
    }

    public func compare(_ first: DiskLocator, _ second: DiskLocator) async throws -> Bool {
        try await compare(first.qemuImageSpec, format: first.format, second.qemuImageSpec, format: second.format)
    }
}
