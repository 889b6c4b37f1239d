import Testing
@testable import Daemon

@Suite("FileStabilityTracker")
struct FileStabilityTrackerTests {
    typealias Tracker = FileStabilityTracker<ContinuousClock.Instant>
    let start = ContinuousClock.now

    func at(_ seconds: Double) -> ContinuousClock.Instant { start.advanced(by: .seconds(seconds)) }

    func look(size: UInt64, mtime: Int64 = 0, inode: UInt64 = 7, writer: Bool = false) -> FileObservation {
        FileObservation(device: 1, inode: inode, size: size, modificationNanoseconds: mtime, hasWriter: writer)
    }

    @Test func quietFileBecomesStableAfterTheQuietPeriod() {
        var tracker = Tracker(quietPeriod: .seconds(5))
        tracker.noteArrival("a.vmdk", .written, at: at(0))
        #expect(tracker.observe("a.vmdk", look(size: 10), at: at(0)) == .pending(recheckAt: at(5)))
        #expect(tracker.observe("a.vmdk", look(size: 10), at: at(4.9)) == .pending(recheckAt: at(5)))
        #expect(tracker.observe("a.vmdk", look(size: 10), at: at(5)) == .stable)
        #expect(tracker.trackedNames.isEmpty)
    }

    @Test func growingFileIsNeverGivenUpOn() {
        var tracker = Tracker(quietPeriod: .seconds(5))
        tracker.noteArrival("big.vmdk", .written, at: at(0))
        // Six hours of a copy growing every 4 s, well past upstream's 30 s give-up.
        for step in 0..<5_400 {
            let now = at(Double(step) * 4)
            let verdict = tracker.observe("big.vmdk", look(size: UInt64(step), mtime: Int64(step)), at: now)
            #expect(verdict != .stable)
        }
        #expect(tracker.trackedNames == ["big.vmdk"])
        #expect(tracker.observe("big.vmdk", look(size: 5_399, mtime: 5_399), at: at(5_399 * 4 + 5)) == .stable)
    }

    @Test func openWriterBlocksStabilityEvenWhenSizeStandsStill() {
        var tracker = Tracker(quietPeriod: .seconds(2), writerRecheckInterval: .seconds(1))
        for second in 0..<60 {
            #expect(tracker.observe("a.raw", look(size: 10, writer: true), at: at(Double(second)))
                    == .pending(recheckAt: at(Double(second) + 1)))
        }
        // Writer gone: the quiet period counts from the last time a writer was seen.
        #expect(tracker.observe("a.raw", look(size: 10), at: at(60)) == .pending(recheckAt: at(61)))
        #expect(tracker.observe("a.raw", look(size: 10), at: at(61)) == .stable)
    }

    @Test func renamedInFileIsStableAtOnce() {
        var tracker = Tracker(quietPeriod: .seconds(5))
        tracker.noteArrival("vm.ova", .movedIn, at: at(0))
        #expect(tracker.observe("vm.ova", look(size: 100), at: at(0.01)) == .stable)
    }

    @Test func renamedInFileStillOpenForWritingWaits() {
        var tracker = Tracker(quietPeriod: .seconds(5))
        tracker.noteArrival("vm.ova", .movedIn, at: at(0))
        #expect(tracker.observe("vm.ova", look(size: 100, writer: true), at: at(0)) == .pending(recheckAt: at(1)))
        #expect(tracker.observe("vm.ova", look(size: 200), at: at(1)) == .pending(recheckAt: at(6)))
        #expect(tracker.observe("vm.ova", look(size: 200), at: at(6)) == .stable)
    }

    @Test func writeEventsRestartTheQuietPeriod() {
        var tracker = Tracker(quietPeriod: .seconds(5))
        _ = tracker.observe("a.img", look(size: 1), at: at(0))
        tracker.noteArrival("a.img", .written, at: at(4))
        #expect(tracker.observe("a.img", look(size: 1), at: at(5)) == .pending(recheckAt: at(9)))
        #expect(tracker.observe("a.img", look(size: 1), at: at(9)) == .stable)
    }

    @Test func replacedFileRestartsTheQuietPeriod() {
        var tracker = Tracker(quietPeriod: .seconds(5))
        _ = tracker.observe("a.img", look(size: 1, inode: 1), at: at(0))
        #expect(tracker.observe("a.img", look(size: 1, inode: 2), at: at(5)) == .pending(recheckAt: at(10)))
    }

    @Test func mtimeChangeAloneCounts() {
        var tracker = Tracker(quietPeriod: .seconds(5))
        _ = tracker.observe("a.img", look(size: 1, mtime: 1), at: at(0))
        #expect(tracker.observe("a.img", look(size: 1, mtime: 2), at: at(5)) == .pending(recheckAt: at(10)))
    }

    @Test func vanishedFileIsGoneAndForgotten() {
        var tracker = Tracker()
        tracker.noteArrival("a.img", .written, at: at(0))
        #expect(tracker.observe("a.img", nil, at: at(1)) == .gone)
        #expect(tracker.trackedNames.isEmpty)
    }

    @Test func discoveredFilesNeedTheQuietPeriodToo() {
        var tracker = Tracker(quietPeriod: .seconds(3))
        tracker.noteArrival("old.vmdk", .discovered, at: at(0))
        #expect(tracker.observe("old.vmdk", look(size: 5), at: at(10)) == .pending(recheckAt: at(13)))
        #expect(tracker.observe("old.vmdk", look(size: 5), at: at(13)) == .stable)
    }
}
