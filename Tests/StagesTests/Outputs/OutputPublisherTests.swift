import Foundation
import Testing
import TestSupport
@testable import Stages

@Suite("OutputPublisher")
struct OutputPublisherTests {
    /// A work directory with finished outputs, as the runner leaves them.
    private func workFiles(in directory: Scratch, job: Int64) throws -> [OutputPublisher.File] {
        let work = try directory.subdirectory("work/\(job)")
        var files: [OutputPublisher.File] = []
        for name in ["web01.qcow2", "domain.xml", "metadata.json"] {
            let url = work.appendingPathComponent(name)
            try Data("\(name) of job \(job)\n".utf8).write(to: url)
            files.append(.init(name: name, source: url))
        }
        return files
    }

    private func contents(_ url: URL) throws -> String {
        String(decoding: try Data(contentsOf: url), as: UTF8.self)
    }

    private func visibleListing(_ url: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: url.path).filter { !$0.hasPrefix(".") }.sorted()
    }

    @Test("two jobs with the same VM name get <vm> and <vm>-2")
    func uniqueSuffix() throws {
        let directory = try Scratch()
        let output = directory.url.appendingPathComponent("out")
        let publisher = OutputPublisher(outputDirectory: output)
        let first = try publisher.publish(try workFiles(in: directory, job: 1), vmName: "web01", jobID: 1)
        let second = try publisher.publish(try workFiles(in: directory, job: 2), vmName: "web01", jobID: 2)
        #expect(first.lastPathComponent == "web01")
        #expect(second.lastPathComponent == "web01-2")
        #expect(try contents(first.appendingPathComponent("domain.xml")) == "domain.xml of job 1\n")
        #expect(try contents(second.appendingPathComponent("domain.xml")) == "domain.xml of job 2\n")
        #expect(try visibleListing(output) == ["web01", "web01-2"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: output.path).sorted() == ["web01", "web01-2"],
                "no staging or claim directories are left")
        #expect(try visibleListing(first) == ["domain.xml", "metadata.json", "web01.qcow2"])
        #expect(try contents(first.appendingPathComponent(OutputPublisher.jobMarkerName)) == "hyper2kvm job 1\n")
    }

    @Test("a directory made by someone else is never touched")
    func foreignDirectory() throws {
        let directory = try Scratch()
        let output = directory.url.appendingPathComponent("out")
        let foreign = output.appendingPathComponent("web01")
        try FileManager.default.createDirectory(at: foreign, withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: foreign.appendingPathComponent("notes.txt"))
        let empty = output.appendingPathComponent("web01-2")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)

        let publisher = OutputPublisher(outputDirectory: output)
        let published = try publisher.publish(try workFiles(in: directory, job: 7), vmName: "web01", jobID: 7)
        #expect(published.lastPathComponent == "web01-3")
        #expect(try FileManager.default.contentsOfDirectory(atPath: foreign.path) == ["notes.txt"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: empty.path).isEmpty)
        #expect(throws: StageError.self) {
            try publisher.publish(try workFiles(in: directory, job: 8), into: foreign, jobID: 8)
        }
        #expect(throws: StageError.self) {
            try publisher.publish(try workFiles(in: directory, job: 8), into: published, jobID: 8)
        }
        #expect(try contents(published.appendingPathComponent("domain.xml")) == "domain.xml of job 7\n")
    }

    @Test("publishing again for the same job is idempotent")
    func idempotent() throws {
        let directory = try Scratch()
        let output = directory.url.appendingPathComponent("out")
        let publisher = OutputPublisher(outputDirectory: output)
        let files = try workFiles(in: directory, job: 3)
        let reserved = try publisher.reserve(vmName: "web01", jobID: 3)
        #expect(try publisher.reserve(vmName: "web01", jobID: 3) == reserved)
        let first = try publisher.publish(files, into: reserved, jobID: 3)
        let again = try publisher.publish(files, into: reserved, jobID: 3)
        let viaName = try publisher.publish(files, vmName: "web01", jobID: 3)
        #expect(first == reserved && again == reserved && viaName == reserved)
        #expect(try FileManager.default.contentsOfDirectory(atPath: output.path) == ["web01"])
        #expect(try visibleListing(reserved) == ["domain.xml", "metadata.json", "web01.qcow2"])
    }

    @Test("a reservation looks empty until the files appear all at once")
    func reservationThenPublish() throws {
        let directory = try Scratch()
        let output = directory.url.appendingPathComponent("out")
        let publisher = OutputPublisher(outputDirectory: output)
        let reserved = try publisher.reserve(vmName: "db", jobID: 11)
        #expect(try visibleListing(reserved).isEmpty)
        // Another job reserving the same VM name meanwhile gets the next name.
        #expect(try publisher.reserve(vmName: "db", jobID: 12).lastPathComponent == "db-2")
        try publisher.publish(try workFiles(in: directory, job: 11), into: reserved, jobID: 11)
        #expect(try visibleListing(reserved) == ["domain.xml", "metadata.json", "web01.qcow2"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: output.path).sorted() == ["db", "db-2"])
    }

    @Test("release gives back a reservation but never published outputs")
    func release() throws {
        let directory = try Scratch()
        let output = directory.url.appendingPathComponent("out")
        let publisher = OutputPublisher(outputDirectory: output)
        let reserved = try publisher.reserve(vmName: "web01", jobID: 21)
        try publisher.release(reserved, jobID: 22)
        #expect(FileManager.default.fileExists(atPath: reserved.path), "another job's reservation stays")
        try publisher.release(reserved, jobID: 21)
        #expect(!FileManager.default.fileExists(atPath: reserved.path))

        let published = try publisher.publish(try workFiles(in: directory, job: 23), vmName: "web01", jobID: 23)
        try publisher.release(published, jobID: 23)
        #expect(try visibleListing(published) == ["domain.xml", "metadata.json", "web01.qcow2"])
    }

    @Test("a leftover staging directory from a crash is rebuilt")
    func leftoverStaging() throws {
        let directory = try Scratch()
        let output = directory.url.appendingPathComponent("out")
        let publisher = OutputPublisher(outputDirectory: output)
        let reserved = try publisher.reserve(vmName: "web01", jobID: 5)
        // As if the process died while linking files into staging.
        let staging = output.appendingPathComponent(".web01.5.staging")
        try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
        try Data("half".utf8).write(to: staging.appendingPathComponent("web01.qcow2"))
        try Data("stale".utf8).write(to: staging.appendingPathComponent("stale.tmp"))

        let published = try publisher.publish(try workFiles(in: directory, job: 5), into: reserved, jobID: 5)
        #expect(published == reserved)
        #expect(try contents(published.appendingPathComponent("web01.qcow2")) == "web01.qcow2 of job 5\n")
        #expect(!FileManager.default.fileExists(atPath: published.appendingPathComponent("stale.tmp").path))
        #expect(!FileManager.default.fileExists(atPath: staging.path))
    }

    @Test("publishing without a reservation works, the work files stay where they were")
    func withoutReservation() throws {
        let directory = try Scratch()
        let output = directory.url.appendingPathComponent("out")
        let files = try workFiles(in: directory, job: 9)
        let target = output.appendingPathComponent("chosen")
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        let published = try OutputPublisher(outputDirectory: output).publish(files, into: target, jobID: 9)
        #expect(published == target)
        #expect(files.allSatisfy { FileManager.default.fileExists(atPath: $0.source.path) })
        #expect(try visibleListing(target) == ["domain.xml", "metadata.json", "web01.qcow2"])
    }

    @Test("hostile VM names become one safe path component")
    func hostileNames() throws {
        #expect(OutputPublisher.directoryName(for: "../../etc") == "_._.._etc")
        #expect(OutputPublisher.directoryName(for: ".hidden") == "_hidden")
        #expect(OutputPublisher.directoryName(for: "..") == "_.")
        #expect(OutputPublisher.directoryName(for: "") == "vm")
        #expect(OutputPublisher.directoryName(for: "a\nb\u{7F}c") == "a_b_c")
        #expect(OutputPublisher.directoryName(for: String(repeating: "é", count: 300)).utf8.count <= 200)
        #expect(OutputPublisher.directoryName(for: "web 01 <&>") == "web 01 <&>")

        let directory = try Scratch()
        let output = directory.url.appendingPathComponent("out")
        let published = try OutputPublisher(outputDirectory: output)
            .publish(try workFiles(in: directory, job: 4), vmName: "../../escape", jobID: 4)
        #expect(published.deletingLastPathComponent().standardizedFileURL.path == output.standardizedFileURL.path)
        #expect(published.lastPathComponent == "_._.._escape")
    }

    @Test("file names that are not plain names are refused")
    func badFileNames() throws {
        let directory = try Scratch()
        let output = directory.url.appendingPathComponent("out")
        let source = directory.file("x")
        try Data("x".utf8).write(to: source)
        for name in ["../x", "a/b", "", ".", OutputPublisher.jobMarkerName] {
            #expect(throws: StageError.self) {
                try OutputPublisher(outputDirectory: output).publish([.init(name: name, source: source)], vmName: "v", jobID: 1)
            }
        }
    }

    @Test("a missing work file is an error naming it")
    func missingWorkFile() throws {
        let directory = try Scratch()
        let missing = directory.file("gone.qcow2")
        do {
            try OutputPublisher(outputDirectory: directory.url.appendingPathComponent("out"))
                .publish([.init(name: "gone.qcow2", source: missing)], vmName: "v", jobID: 1)
            Issue.record("published a missing file")
        } catch let error as StageError {
            #expect(error.file == missing.path)
            #expect(error.code == .ioFailed)
        }
    }
}

@Suite("DurableFile")
struct DurableFileTests {
    @Test("renameNoReplace never replaces a file or a directory")
    func noReplace() throws {
        let directory = try Scratch()
        let a = directory.file("a")
        let b = directory.file("b")
        try DurableFile.write(Data("a".utf8), to: a)
        try DurableFile.write(Data("b".utf8), to: b)
        #expect(try DurableFile.renameNoReplace(from: a, to: b) == false)
        #expect(try Data(contentsOf: b) == Data("b".utf8))
        let c = directory.file("c")
        #expect(try DurableFile.renameNoReplace(from: a, to: c))
        #expect(!FileManager.default.fileExists(atPath: a.path))

        let dirA = try directory.subdirectory("dirA")
        let dirB = try directory.subdirectory("dirB")
        #expect(try DurableFile.renameNoReplace(from: dirA, to: dirB) == false, "not even an empty directory")
        #expect(throws: StageError.self) {
            try DurableFile.renameNoReplace(from: directory.file("missing"), to: directory.file("d"))
        }
    }

    @Test("renameExchange swaps two directories")
    func exchange() throws {
        let directory = try Scratch()
        let one = try directory.subdirectory("one")
        let two = try directory.subdirectory("two")
        try Data("1".utf8).write(to: one.appendingPathComponent("f"))
        try Data("2".utf8).write(to: two.appendingPathComponent("f"))
        #expect(try DurableFile.renameExchange(one, two))
        #expect(try Data(contentsOf: one.appendingPathComponent("f")) == Data("2".utf8))
        #expect(try Data(contentsOf: two.appendingPathComponent("f")) == Data("1".utf8))
    }

    @Test("commit renames a partial file over a leftover final one")
    func commit() throws {
        let directory = try Scratch()
        let partial = directory.file("out.json.partial")
        let final = directory.file("out.json")
        try Data("old".utf8).write(to: final)
        try DurableFile.write(Data("new".utf8), to: partial)
        try DurableFile.commit(partial: partial, to: final)
        #expect(try Data(contentsOf: final) == Data("new".utf8))
        #expect(!FileManager.default.fileExists(atPath: partial.path))
    }

    @Test("fsync of a missing file is an error naming it")
    func fsyncMissing() throws {
        let directory = try Scratch()
        let missing = directory.file("missing")
        do {
            try DurableFile.fsync(missing)
            Issue.record("fsync of a missing file succeeded")
        } catch let error as StageError {
            #expect(error.file == missing.path)
        }
        #expect(throws: StageError.self) { try DurableFile.fsyncDirectory(directory.file("nodir")) }
    }

    @Test("writing into a full filesystem is a no-space error")
    func noSpace() async throws {
        let directory = try Scratch()
        let mountPoint = try directory.subdirectory("small")
        let (mounted, message) = try await OutputTestImages.status("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mountPoint.path])
        try #require(mounted == 0, "needs root to mount a tmpfs: \(message)")
        defer { _ = try? shBlocking(["umount", mountPoint.path], allowFailure: true) }
        do {
            try DurableFile.write(Data(count: 1 << 20), to: mountPoint.appendingPathComponent("big"))
            Issue.record("1 MiB fitted into 64 KiB")
        } catch let error as StageError {
            #expect(error.code == .noSpace, "\(error)")
        }
    }
}
