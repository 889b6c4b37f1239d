import Foundation
import Testing
@testable import Daemon

@Suite struct DiskCopyProgressTests {
    /// 3 of 4 chunks of 1 GiB done, 2 of them in this run's 10 s: 2 GiB / 10 s, 1 GiB left.
    @Test func bytesRateAndTimeLeftComeFromTheChunkCheckpoint() throws {
        let value = #"{"virtualSize":4294967296,"chunkBytes":1073741824,"chunksDone":3,"runStartedAt":1000,"runStartChunks":1,"#
            + #""savedAt":1010,"events":[],"format":"qcow2","compress":false,"source":[],"targetDevice":1,"targetInode":2}"#
        let progress = try #require(DiskCopyProgress.from(name: "copy disk-disk0.qcow2", value: value))
        #expect(progress.disk == "disk-disk0.qcow2")
        #expect(progress.bytesDone == 3 << 30)
        #expect(progress.bytesTotal == 4 << 30)
        #expect(progress.bytesPerSecond == Double(2 << 30) / 10)
        #expect(progress.etaSeconds == 5)
        #expect(progress.line == "disk-disk0.qcow2: 3.0 of 4.0 GiB, 205 MiB/s, about 5 s left")
        // Other checkpoints (the output hash) and unreadable values are not copies.
        #expect(DiskCopyProgress.from(name: "sha256 disk-disk0.qcow2", value: value) == nil)
        #expect(DiskCopyProgress.from(name: "copy x", value: "{}") == nil)
    }

    /// Before the first chunk of a run there is no rate; a checkpoint past the end stays in bounds.
    @Test func noRateBeforeTheFirstChunkAndNoOverflow() throws {
        let fresh = #"{"virtualSize":100,"chunkBytes":64,"chunksDone":0,"runStartedAt":5,"runStartChunks":0,"savedAt":5}"#
        let start = try #require(DiskCopyProgress.from(name: "copy d", value: fresh))
        #expect(start.bytesPerSecond == nil && start.etaSeconds == nil && start.bytesDone == 0)
        let huge = #"{"virtualSize":100,"chunkBytes":9223372036854775807,"chunksDone":9,"runStartedAt":5,"runStartChunks":0,"savedAt":6}"#
        #expect(DiskCopyProgress.from(name: "copy d", value: huge)?.bytesDone == 100)
    }

    @Test func theConvertCommandSaysTheTimeLeft() {
        #expect(ProgressLine.timeLeft(elapsed: .seconds(30), fraction: 0.25) == "1 min 30 s")
        #expect(ProgressLine.timeLeft(elapsed: .seconds(10), fraction: 0.5) == "10 s")
        #expect(ProgressLine.timeLeft(elapsed: .milliseconds(200), fraction: 0.5) == nil)
        #expect(ProgressLine.timeLeft(elapsed: .seconds(10), fraction: 1) == nil)
    }

    @Test func statusListsEachDiskUnderItsJob() throws {
        let copy = DiskCopyProgress(disk: "disk-disk0.qcow2", bytesDone: 1 << 30, bytesTotal: 4 << 30, bytesPerSecond: nil, etaSeconds: nil)
        let json = try JournalReports.status([], daemon: nil, json: true, copies: [7: [copy]])
        #expect(json.contains("\"bytes_done\" : 1073741824"), "\(json)")
    }
}
