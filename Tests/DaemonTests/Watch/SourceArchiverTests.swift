import Foundation
import Glibc
import Testing
import TestSupport
@testable import Daemon

@Suite("SourceArchiver")
struct SourceArchiverTests {
    let day = Date(timeIntervalSince1970: 1_767_268_800) // 2026-01-01 12:00 UTC
    let utc = TimeZone(identifier: "UTC") ?? .current

    private func identity(_ path: String) -> FileIdentity? {
        var status = stat()
        guard lstat(path, &status) == 0 else { return nil }
        return FileIdentity(device: UInt64(status.st_dev), inode: UInt64(status.st_ino))
    }

    @Test func movesToProcessedByDateAndIsIdempotent() throws {
        let queue = try Scratch()
        defer { queue.remove() }
        try queue.write("vm.vmdk", "disk")
        let archiver = SourceArchiver(watchDirectory: queue.path, timeZone: utc)
        let member = SourceArchiver.Member(name: "vm.vmdk", identity: identity(queue.path("vm.vmdk")))
        let first = try archiver.archive([member], to: .processed, at: day)
        #expect(first == [.init(name: "vm.vmdk", path: queue.path(".processed/2026-01-01/vm.vmdk"), wasAlreadyArchived: false)])
        #expect(!queue.exists("vm.vmdk"))
        let again = try archiver.archive([member], to: .processed, at: day)
        #expect(again == [.init(name: "vm.vmdk", path: queue.path(".processed/2026-01-01/vm.vmdk"), wasAlreadyArchived: true)])
        // After midnight the inode is still found in yesterday's folder.
        let nextDay = try archiver.archive([member], to: .processed, at: day.addingTimeInterval(86_400))
        #expect(nextDay.first?.path == queue.path(".processed/2026-01-01/vm.vmdk"))
        #expect(nextDay.first?.wasAlreadyArchived == true)
    }

    @Test func neverOverwritesASingleFile() throws {
        let queue = try Scratch()
        defer { queue.remove() }
        let archiver = SourceArchiver(watchDirectory: queue.path)
        for round in 1...3 {
            try queue.write("bad.img", "round \(round)")
            let result = try archiver.archive([.init(name: "bad.img")], to: .errors)
            let expectedName = round == 1 ? "bad.img" : "bad_\(round).img"
            #expect(result.first?.path == queue.path(".errors/\(expectedName)"))
        }
        #expect(try String(contentsOfFile: queue.path(".errors/bad.img"), encoding: .utf8) == "round 1")
        #expect(try String(contentsOfFile: queue.path(".errors/bad_3.img"), encoding: .utf8) == "round 3")
    }

    @Test func multiFileJobMovesTogetherAndKeepsNamesOnCollision() throws {
        let queue = try Scratch()
        defer { queue.remove() }
        let archiver = SourceArchiver(watchDirectory: queue.path, timeZone: utc)
        let names = ["app.ovf", "app-disk1.vmdk", "app-disk1-flat.vmdk"]
        for name in names { try queue.write(name, "first") }
        let first = try archiver.archive(names.map { .init(name: $0) }, to: .processed, at: day)
        #expect(first.map(\.path) == names.map { queue.path(".processed/2026-01-01/\($0)") })

        for name in names { try queue.write(name, "second") }
        let second = try archiver.archive(names.map { .init(name: $0) }, to: .processed, at: day)
        // Same names inside a fresh folder, so the OVF still finds its disks.
        #expect(second.map(\.path) == names.map { queue.path(".processed/2026-01-01/app.ovf_2/\($0)") })
        #expect(try String(contentsOfFile: queue.path(".processed/2026-01-01/app.ovf"), encoding: .utf8) == "first")
        #expect(try FileManager.default.contentsOfDirectory(atPath: queue.path) == [".processed"])
    }

    @Test func resumesAHalfDoneArchive() throws {
        let queue = try Scratch()
        defer { queue.remove() }
        let archiver = SourceArchiver(watchDirectory: queue.path, timeZone: utc)
        try queue.write("d.vmdk")
        try queue.write("d-flat.vmdk")
        let members = ["d.vmdk", "d-flat.vmdk"].map { SourceArchiver.Member(name: $0, identity: identity(queue.path($0))) }
        // A crash after the first rename:
        _ = try archiver.archive([members[0]], to: .errors)
        let result = try archiver.archive(members, to: .errors)
        #expect(result.map(\.wasAlreadyArchived) == [true, false])
        #expect(queue.exists(".errors/d.vmdk") && queue.exists(".errors/d-flat.vmdk"))
    }

    @Test func newFileUnderTheSameNameIsLeftAlone() throws {
        let queue = try Scratch()
        defer { queue.remove() }
        let archiver = SourceArchiver(watchDirectory: queue.path)
        try queue.write("x.raw", "old")
        let member = SourceArchiver.Member(name: "x.raw", identity: identity(queue.path("x.raw")))
        _ = try archiver.archive([member], to: .errors)
        try queue.write("x.raw", "new drop")
        let again = try archiver.archive([member], to: .errors)
        #expect(again.first?.wasAlreadyArchived == true)
        #expect(try String(contentsOfFile: queue.path("x.raw"), encoding: .utf8) == "new drop")
    }

    @Test func missingEverywhereIsAClearError() throws {
        let queue = try Scratch()
        defer { queue.remove() }
        let error = #expect(throws: SourceArchiveError.self) {
            try SourceArchiver(watchDirectory: queue.path).archive([.init(name: "nope.vmdk")], to: .errors)
        }
        #expect(error?.description.hasPrefix(queue.path("nope.vmdk") + ": cannot archive") == true)
    }
}
