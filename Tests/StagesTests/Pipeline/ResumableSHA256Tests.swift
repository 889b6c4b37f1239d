import Foundation
import Synchronization
import Testing
import TestSupport
@testable import Stages

@Suite struct ResumableSHA256Tests {
    /// Stops a hash after `calls` buffers: the same cut a kill makes, minus the process.
    final class CutAfter: Sendable {
        private let left: Mutex<Int>
        init(_ calls: Int) { left = Mutex(calls) }
        var reached: Bool { left.withLock { value in value -= 1; return value < 0 } }
    }

    private func file(_ scratch: Scratch, megabytes: Int) async throws -> URL {
        let url = scratch.file("output.copying")
        _ = try await sh(["sh", "-c", "head -c \(megabytes)M /dev/urandom > '\(url.path)'"])
        return url
    }

    /// Cut at about 50 % (the 81st of 160 buffers of 256 KiB), the hash goes on from the last
    /// checkpoint (16 MiB, the segment boundary before the cut) and equals sha256sum.
    @Test func aHashCutHalfWayResumesFromItsCheckpoint() async throws {
        let scratch = try Scratch("resumable-sha256")
        let url = try await file(scratch, megabytes: 40)
        let checkpoints = MemoryCheckpoints()
        let hash = ResumableSHA256(checkpoints: checkpoints, name: "sha256 disk", segmentBytes: 8 << 20)
        let cut = CutAfter(80)
        #expect(throws: CancellationError.self) { _ = try hash.digest(of: url, isCancelled: { cut.reached }) }
        let resumed = try hash.digest(of: url)
        #expect(resumed.resumedAt == 16 << 20)
        let reference = try await sh(["sha256sum", url.path]).out.prefix(64)
        #expect(resumed.hex == String(reference))
    }

    /// A checkpoint of a file whose mtime changed since is not used; nor one whose state
    /// does not say it covered the bytes the checkpoint claims.
    @Test func aCheckpointOfAChangedFileOrAForgedStateIsNotTrusted() async throws {
        let scratch = try Scratch("resumable-sha256-changed")
        let url = try await file(scratch, megabytes: 24)
        let checkpoints = MemoryCheckpoints()
        let hash = ResumableSHA256(checkpoints: checkpoints, name: "sha256 disk", segmentBytes: 8 << 20)
        let cut = CutAfter(40)
        #expect(throws: CancellationError.self) { _ = try hash.digest(of: url, isCancelled: { cut.reached }) }
        let saved = try #require(try checkpoints.load("sha256 disk"))
        _ = try await sh(["touch", "-d", "2001-01-01", url.path])
        let reference = String(try await sh(["sha256sum", url.path]).out.prefix(64))
        let afterTouch = try hash.digest(of: url)
        #expect(afterTouch.resumedAt == nil)
        #expect(afterTouch.hex == reference)

        // The saved state, claimed for twice the bytes it covered.
        var forged = try JSONDecoder().decode(HashCheckpoint.self, from: Data(saved.utf8))
        var info = stat()
        #expect(stat(url.path, &info) == 0)
        forged.file = "\(info.st_dev):\(info.st_ino) \(info.st_size) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
        forged.offset *= 2
        try checkpoints.save("sha256 disk", String(decoding: try JSONEncoder().encode(forged), as: UTF8.self))
        let afterForgery = try hash.digest(of: url)
        #expect(afterForgery.resumedAt == nil)
        #expect(afterForgery.hex == reference)
    }
}
