import Foundation
import Testing
import TestSupport

/// The source digest in metadata.json through the real binary: the sparse digest, as
/// scripts/sparse-digest computes it, the same for a sparse file and its dense copy.
@Suite(.serialized, .tags(.slow), .notInQuickRun) struct SourceDigestEndToEndTests {
    private static let script = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("scripts/sparse-digest").path

    private func sourceOfMetadata(converting source: String, scratch: Scratch) async throws -> [String: Any] {
        let out = scratch.path("out-" + URL(fileURLWithPath: source).lastPathComponent)
        let run = try await sh([ProductBinary.path, "convert", source, "--output-dir", out, "--no-fix"], allowFailure: true)
        #expect(run.status == 0, "convert failed: \(run.err)")
        let name = URL(fileURLWithPath: source).deletingPathExtension().lastPathComponent
        let data = try Data(contentsOf: URL(fileURLWithPath: out + "/\(name)/metadata.json"))
        let metadata = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        return try #require(metadata?["source"] as? [String: Any])
    }

    @Test func theSourceIsIdentifiedByItsSparseDigestWhateverItsAllocation() async throws {
        let scratch = try Scratch("source-digest")
        let sparse = scratch.path("sparse.raw")
        try await TestDisks.makeRaw(at: sparse)
        let dense = scratch.path("dense.raw")
        try await sh(["cp", "--sparse=never", sparse, dense])

        let ofSparse = try await sourceOfMetadata(converting: sparse, scratch: scratch)
        let expected = String(try await sh(["python3", Self.script, sparse]).out.prefix { $0 != " " })
        #expect(ofSparse["sparse_sha256"] as? String == expected)
        #expect(ofSparse["sha256"] == nil, "the sparse digest must not pass for a SHA-256")
        let ofDense = try await sourceOfMetadata(converting: dense, scratch: scratch)
        #expect(ofDense["sparse_sha256"] as? String == expected)
    }
}
