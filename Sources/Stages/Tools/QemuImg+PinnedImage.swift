import Foundation

/// The same operations on an untrusted image, always through its pinned, closed option tree
/// (`PinnedImage.spec`): the product never hands qemu a name found inside an input.
extension QemuImg {
    @discardableResult
    public func convert(from source: PinnedImage, to destination: URL, outputFormat: String,
                        compress: Bool = false, compressLevel: Int = QemuImg.zstdLevel,
                        limits: ExternalCommand.Limits? = nil,
                        progress: @escaping @Sendable (Double) -> Void = { _ in }) async throws -> ConversionSummary {
        try await convert(from: source.spec, sourceFormat: source.format, to: destination,
                          outputFormat: outputFormat, compress: compress, compressLevel: compressLevel,
                          limits: limits, progress: progress)
    }

    public func createOverlay(backing: PinnedImage, at overlay: URL) async throws {
        try await createOverlay(backing: backing.spec, backingFormat: backing.format, at: overlay)
    }

    public func compare(_ first: PinnedImage, _ second: PinnedImage) async throws -> Bool {
        try await compare(first.spec, format: first.format, second.spec, format: second.format)
    }
}
