import Foundation
import Glibc
import Testing
import TestSupport
@testable import Daemon

@Suite("FileStabilitySampler", .serialized)
struct FileStabilitySamplerTests {
    typealias Tracker = FileStabilityTracker<ContinuousClock.Instant>

    private func shell(_ script: String, _ arguments: String...) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script, "sh"] + arguments
        try process.run()
        return process
    }

    @Test func slowWriterIsNotStableUntilItFinishes() async throws {
        let queue = try Scratch()
        defer { queue.remove() }
        let path = queue.path("slow.vmdk")
        let stop = queue.path(".stop-writer")
        // Appends one byte every 0.5 s, holding the file open, until the test says stop. The
        // quiet period is shorter than each pause, so only the open-writer check can hold it
        // back; and however slowly the machine samples, every look happens while it writes.
        let writer = try shell(#"exec 3>>"$1"; while [ ! -e "$2" ]; do printf x >&3; sleep 0.5; done"#, path, stop)
        let sampler = FileStabilitySampler(directory: queue.path)
        var tracker = Tracker(quietPeriod: .milliseconds(300), writerRecheckInterval: .milliseconds(100))
        tracker.noteArrival("slow.vmdk", .written, at: .now)
        var pendingLooksWhileWriting = 0
        while pendingLooksWhileWriting < 5 && writer.isRunning {
            let verdict = sampler.check(["slow.vmdk"], with: &tracker)["slow.vmdk"]
            #expect(verdict != .stable, "stable while a writer holds the file open")
            if case .pending = verdict { pendingLooksWhileWriting += 1 }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(pendingLooksWhileWriting == 5)
        _ = FileManager.default.createFile(atPath: stop, contents: nil)
        writer.waitUntilExit()
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        var verdict = sampler.check(["slow.vmdk"], with: &tracker)["slow.vmdk"]
        while verdict != .stable && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            verdict = sampler.check(["slow.vmdk"], with: &tracker)["slow.vmdk"]
        }
        #expect(verdict == .stable)
        #expect((try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int ?? 0) > 0)
    }

    @Test func renamedInFileIsStableAtOnce() throws {
        let queue = try Scratch()
        let staging = try Scratch()
        defer { queue.remove(); staging.remove() }
        try staging.write("vm.ova", "complete")
        #expect(rename(staging.path("vm.ova"), queue.path("vm.ova")) == 0)
        let sampler = FileStabilitySampler(directory: queue.path)
        var tracker = Tracker(quietPeriod: .seconds(5))
        tracker.noteArrival("vm.ova", .movedIn, at: .now)
        #expect(sampler.check(["vm.ova"], with: &tracker)["vm.ova"] == .stable)
    }

    @Test func fileStillOpenForWritingIsNotStableThoughItsSizeStopped() async throws {
        let queue = try Scratch()
        defer { queue.remove() }
        let path = try queue.write("held.raw", "")
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.write(contentsOf: Data("some bytes".utf8))
        let sampler = FileStabilitySampler(directory: queue.path)
        var tracker = Tracker(quietPeriod: .milliseconds(200), writerRecheckInterval: .milliseconds(100))
        for _ in 0..<12 {
            let sample = sampler.look(at: ["held.raw"])["held.raw"]
            #expect(sample?.observation?.hasWriter == true)
            #expect(sampler.check(["held.raw"], with: &tracker)["held.raw"] != .stable)
            try await Task.sleep(for: .milliseconds(100))
        }
        try handle.close()
        let deadline = ContinuousClock.now.advanced(by: .seconds(2))
        var verdict = sampler.check(["held.raw"], with: &tracker)["held.raw"]
        while verdict != .stable && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            verdict = sampler.check(["held.raw"], with: &tracker)["held.raw"]
        }
        #expect(verdict == .stable)
    }

    @Test func readersAreNotWriters() async throws {
        let queue = try Scratch()
        defer { queue.remove() }
        let path = try queue.write("read.img", "x")
        let reader = try shell(#"exec 3<"$1"; exec sleep 30"#, path)
        defer { kill(reader.processIdentifier, SIGKILL); reader.waitUntilExit() }
        try await Task.sleep(for: .milliseconds(200))
        let sampler = FileStabilitySampler(directory: queue.path)
        #expect(sampler.look(at: ["read.img"])["read.img"]?.observation?.hasWriter == false)
    }

    @Test func symlinksAndMissingNamesAreNotTaken() throws {
        let queue = try Scratch()
        defer { queue.remove() }
        #expect(symlink("/etc/hostname", queue.path("link.img")) == 0)
        let sampler = FileStabilitySampler(directory: queue.path)
        let samples = sampler.look(at: ["link.img", "absent.img"])
        #expect(samples["link.img"] == .notRegularFile(kind: "symbolic link"))
        #expect(samples["absent.img"] == .missing)
        var tracker = Tracker()
        #expect(sampler.check(["link.img"], with: &tracker)["link.img"] == .gone)
    }

    @Test func listingHasOnlyRegularFiles() throws {
        let queue = try Scratch()
        defer { queue.remove() }
        try queue.write("b.vmdk")
        try queue.write("a.ova")
        try FileManager.default.createDirectory(atPath: queue.path(".processed"), withIntermediateDirectories: false)
        #expect(symlink("/etc/hostname", queue.path("c.img")) == 0)
        #expect(mkfifo(queue.path("d.raw"), 0o600) == 0)
        #expect(try QueueDirectoryListing.regularFileNames(in: queue.path) == ["a.ova", "b.vmdk"])
    }
}
