import Foundation
import Glibc
import SystemSupport
import Testing
import TestSupport
@testable import Daemon

@Suite("InotifyWatcher", .serialized)
struct InotifyWatcherTests {
    /// Collects events until `done` says so or `timeout` passes.
    private func collect(from watcher: InotifyWatcher, timeout: Duration = .seconds(5),
                         until done: @escaping @Sendable ([WatchEvent]) -> Bool) async -> [WatchEvent] {
        await withTaskGroup(of: [WatchEvent]?.self) { group in
            group.addTask {
                var seen: [WatchEvent] = []
                for await event in watcher.events {
                    seen.append(event)
                    if done(seen) { break }
                }
                return seen
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            watcher.stop()
            if let first { return first }
            return await group.next().flatMap { $0 } ?? []
        }
    }

    @Test func deliversCloseWriteForACopiedFile() async throws {
        let queue = try Scratch()
        defer { queue.remove() }
        let watcher = try InotifyWatcher(directory: queue.path)
        watcher.start()
        try queue.write("disk.vmdk", String(repeating: "x", count: 10_000))
        let events = await collect(from: watcher) { seen in
            seen.contains(WatchEvent(name: "disk.vmdk", kind: .closedAfterWrite))
        }
        #expect(events.first == WatchEvent(name: "disk.vmdk", kind: .created))
        #expect(events.contains(WatchEvent(name: "disk.vmdk", kind: .modified)))
        #expect(events.contains(WatchEvent(name: "disk.vmdk", kind: .closedAfterWrite)))
    }

    @Test func deliversMovedInForARenamedFile() async throws {
        let queue = try Scratch()
        let staging = try Scratch()
        defer { queue.remove(); staging.remove() }
        try staging.write("vm.ova")
        let watcher = try InotifyWatcher(directory: queue.path)
        watcher.start()
        #expect(rename(staging.path("vm.ova"), queue.path("vm.ova")) == 0)
        let events = await collect(from: watcher) { $0.contains { $0.kind == .movedIn } }
        #expect(events == [WatchEvent(name: "vm.ova", kind: .movedIn)])
    }

    @Test func reportsDirectoriesDeletionsAndRenamesOut() async throws {
        let queue = try Scratch()
        let elsewhere = try Scratch()
        defer { queue.remove(); elsewhere.remove() }
        let watcher = try InotifyWatcher(directory: queue.path)
        watcher.start()
        try FileManager.default.createDirectory(atPath: queue.path(".processed"), withIntermediateDirectories: false)
        try queue.write("a.raw")
        #expect(rename(queue.path("a.raw"), elsewhere.path("a.raw")) == 0)
        try queue.write("b.raw")
        #expect(unlink(queue.path("b.raw")) == 0)
        let events = await collect(from: watcher) { $0.contains { $0.kind == .deleted } }
        #expect(events.contains(WatchEvent(name: ".processed", kind: .created, isDirectory: true)))
        #expect(events.contains(WatchEvent(name: "a.raw", kind: .movedOut)))
        #expect(events.contains(WatchEvent(name: "b.raw", kind: .deleted)))
    }

    @Test func ignoresNestedDirectoriesContents() async throws {
        let queue = try Scratch()
        defer { queue.remove() }
        try FileManager.default.createDirectory(atPath: queue.path("sub"), withIntermediateDirectories: false)
        let watcher = try InotifyWatcher(directory: queue.path)
        watcher.start()
        try queue.write("sub/inner.vmdk")
        try queue.write("top.vmdk")
        let events = await collect(from: watcher) { $0.contains { $0.kind == .closedAfterWrite } }
        #expect(!events.contains { $0.name.contains("inner") })
        #expect(events.contains(WatchEvent(name: "top.vmdk", kind: .closedAfterWrite)))
    }

    @Test func stopFinishesTheStream() async throws {
        let queue = try Scratch()
        defer { queue.remove() }
        let watcher = try InotifyWatcher(directory: queue.path)
        watcher.start()
        let consumer = Task { () -> Int in
            var count = 0
            for await _ in watcher.events { count += 1 }
            return count
        }
        try await Task.sleep(for: .milliseconds(100))
        watcher.stop()
        watcher.stop()
        #expect(await consumer.value == 0)
    }

    @Test func deletingTheWatchedDirectoryEndsTheStream() async throws {
        let queue = try Scratch()
        defer { queue.remove() }
        let watcher = try InotifyWatcher(directory: queue.path)
        watcher.start()
        queue.remove()
        var kinds: [WatchEvent.Kind] = []
        for await event in watcher.events { kinds.append(event.kind) }
        #expect(kinds.last == .directoryGone)
    }

    @Test func missingDirectoryIsAClearError() throws {
        let error = #expect(throws: SystemError.self) {
            _ = try InotifyWatcher(directory: "/nonexistent/h2k-queue")
        }
        #expect(error?.description.hasPrefix("/nonexistent/h2k-queue: inotify_add_watch failed") == true)
    }

    @Test func kernelQueueOverflowAsksForARescan() async throws {
        let queue = try Scratch()
        defer { queue.remove() }
        let watcher = try InotifyWatcher(directory: queue.path)
        // Not reading yet: writes alternating between two files each queue an IN_MODIFY the
        // kernel cannot merge with the one before, until the queue overflows
        // (max_queued_events, 16384 by default).
        let limit = Int((try? String(contentsOfFile: "/proc/sys/fs/inotify/max_queued_events", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 16_384
        let first = open(queue.path("a.raw"), O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
        let second = open(queue.path("b.raw"), O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
        defer { close(first); close(second) }
        var byte: UInt8 = 0
        var failedWrites = 0
        for _ in 0...(limit / 2) {
            if write(first, &byte, 1) != 1 { failedWrites += 1 }
            if write(second, &byte, 1) != 1 { failedWrites += 1 }
        }
        #expect(failedWrites == 0)
        watcher.start()
        let events = await collect(from: watcher) { $0.last?.kind == .overflow }
        #expect(events.last == WatchEvent(name: "", kind: .overflow))
    }

    @Test func decoderCollapsesRepeatedModifiesAndMapsOverflow() {
        func record(mask: Int32, name: String) -> [UInt8] {
            var nameBytes = Array(name.utf8)
            if !nameBytes.isEmpty { nameBytes += [UInt8](repeating: 0, count: 16 - nameBytes.count % 16) }
            var bytes: [UInt8] = []
            for field in [UInt32(1), UInt32(bitPattern: mask), 0, UInt32(nameBytes.count)] {
                withUnsafeBytes(of: field.littleEndian) { bytes += $0 }
            }
            return bytes + nameBytes
        }
        let bytes = record(mask: IN_MODIFY, name: "a.vmdk") + record(mask: IN_MODIFY, name: "a.vmdk")
            + record(mask: IN_MODIFY, name: "b.vmdk") + record(mask: IN_MODIFY, name: "a.vmdk")
            + record(mask: IN_CLOSE_WRITE, name: "a.vmdk") + record(mask: IN_MODIFY, name: "a.vmdk")
            + record(mask: IN_Q_OVERFLOW, name: "")
        var decoder = InotifyRecordDecoder()
        let events = bytes.withUnsafeBytes { decoder.decode($0) }
        #expect(events == [
            WatchEvent(name: "a.vmdk", kind: .modified), WatchEvent(name: "b.vmdk", kind: .modified),
            WatchEvent(name: "a.vmdk", kind: .closedAfterWrite), WatchEvent(name: "a.vmdk", kind: .modified),
            WatchEvent(name: "", kind: .overflow),
        ])
    }
}
