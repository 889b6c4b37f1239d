import Foundation
import Glibc
import Testing
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
        let queue = try WatchTestDirectory()
        defer { queue.remove() }
        let path = queue.file("slow.vmdk")
        // Appends one byte every 0.5 s for 4 s, holding the file open throughout. The quiet
        // period is shorter than each pause, so only the open-writer check can hold it back.
        let writer = try shell(#"exec 3>>"$1"; i=0; while [ $i -lt 8 ]; do printf x >&3; sleep 0.5; i=$((i+1)); done"#, path)
        let sampler = FileStabilitySampler(directory: queue.path)
        var tracker = Tracker(quietPeriod: .milliseconds(300), writerRecheckInterval: .milliseconds(100))
        tracker.noteArrival("slow.vmdk", .written, at: .now)
        var pendingLooksWhileWriting = 0
        while writer.isRunning {
            let verdict = sampler.check(["slow.vmdk"], with: &tracker)["slow.vmdk"]
            if writer.isRunning {
                #expect(verdict != .stable)
                if case .pending = verdict { pendingLooksWhileWriting += 1 }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        writer.waitUntilExit()
        // How many looks fit in 4 s depends on the machine's load; what matters is that
        // none of them said stable while the writer was open.
        #expect(pendingLooksWhileWriting >= 1)
        let deadline = ContinuousClock.now.advanced(by: .seconds(3))
        var verdict = sampler.check(["slow.vmdk"], with: &tracker)["slow.vmdk"]
        while verdict != .stable && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            verdict = sampler.check(["slow.vmdk"], with: &tracker)["slow.vmdk"]
        }
        #expect(verdict == .stable)
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int == 8)
    }

    @Test func renamedInFileIsStableAtOnce() throws {
        let queue = try WatchTestDirectory()
        let staging = try WatchTestDirectory()
        defer { queue.remove(); staging.remove() }
        try staging.write("vm.ova", "complete")
        #expect(rename(staging.file("vm.ova"), queue.file("vm.ova")) == 0)
        let sampler = FileStabilitySampler(directory: queue.path)
        var tracker = Tracker(quietPeriod: .seconds(5))
        tracker.noteArrival("vm.ova", .movedIn, at: .now)
        #expect(sampler.check(["vm.ova"], with: &tracker)["vm.ova"] == .stable)
    }

    @Test func fileStillOpenForWritingIsNotStableThoughItsSizeStopped() async throws {
        let queue = try WatchTestDirectory()
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
        let queue = try WatchTestDirectory()
        defer { queue.remove() }
        let path = try queue.write("read.img", "x")
        let reader = try shell(#"exec 3<"$1"; exec sleep 30"#, path)
        defer { kill(reader.processIdentifier, SIGKILL); reader.waitUntilExit() }
        try await Task.sleep(for: .milliseconds(200))
        let sampler = FileStabilitySampler(directory: queue.path)
        #expect(sampler.look(at: ["read.img"])["read.img"]?.observation?.hasWriter == false)
    }

    @Test func symlinksAndMissingNamesAreNotTaken() throws {
        let queue = try WatchTestDirectory()
        defer { queue.remove() }
        #expect(symlink("/etc/hostname", queue.file("link.img")) == 0)
        let sampler = FileStabilitySampler(directory: queue.path)
        let samples = sampler.look(at: ["link.img", "absent.img"])
        #expect(samples["link.img"] == .notRegularFile(kind: "symbolic link"))
        #expect(samples["absent.img"] == .missing)
        var tracker = Tracker()
        #expect(sampler.check(["link.img"], with: &tracker)["link.img"] == .gone)
    }

    @Test func listingHasOnlyRegularFiles() throws {
        let queue = try WatchTestDirectory()
        defer { queue.remove() }
        try queue.write("b.vmdk")
        try queue.write("a.ova")
        try FileManager.default.createDirectory(atPath: queue.file(".processed"), withIntermediateDirectories: false)
        #expect(symlink("/etc/hostname", queue.file("c.img")) == 0)
        #expect(mkfifo(queue.file("d.raw"), 0o600) == 0)
        #expect(try QueueDirectoryListing.regularFileNames(in: queue.path) == ["a.ova", "b.vmdk"])
    }
}
