import Foundation
import Glibc
import SystemSupport
import TestSupport
import Testing

@Suite("Durable files")
struct DurableFileTests {
    @Test func writeCreatesThenTruncates() throws {
        let scratch = try Scratch("systemsupport")
        try DurableWrite.write(Array("a longer first text".utf8), to: scratch.path("out.json"))
        try DurableWrite.write(Data("short".utf8), to: scratch.path("out.json"))
        #expect(try scratch.read("out.json") == "short")
    }

    @Test func writeIntoAMissingDirectoryNamesOpenAndThePath() throws {
        let scratch = try Scratch("systemsupport")
        let path = scratch.path("missing/out.json")
        let error = #expect(throws: SystemError.self) { try DurableWrite.write([1, 2, 3], to: path) }
        #expect(error == SystemError(operation: "open", path: path, errno: ENOENT))
    }

    @Test func replaceSwapsTheWholeFileAndLeavesNoTemporary() throws {
        let scratch = try Scratch("systemsupport")
        try scratch.write("report.error.json", "old")
        try DurableWrite.replace(scratch.path("report.error.json"), with: Array("new".utf8))
        #expect(try scratch.read("report.error.json") == "new")
        #expect(try scratch.names() == ["report.error.json"])
    }

    @Test func aFailedReplaceLeavesNoTemporaryAndTheTargetAlone() throws {
        let scratch = try Scratch("systemsupport")
        // A non-empty directory cannot be renamed over: the rename is the step that fails.
        try FileManager.default.createDirectory(atPath: scratch.path("taken"), withIntermediateDirectories: false)
        try scratch.write("taken/inside", "keep")
        let error = #expect(throws: SystemError.self) {
            try DurableWrite.replace(scratch.path("taken"), with: Array("new".utf8))
        }
        #expect(error?.operation == "rename" && error?.destination == scratch.path("taken"))
        #expect(try scratch.names() == ["taken"])
        #expect(try scratch.read("taken/inside") == "keep")
    }

    @Test func replaceKeepsATemporaryOfAMaximalNameWithinNameMax() throws {
        let scratch = try Scratch("systemsupport")
        let name = String(repeating: "é", count: 127) + "x"  // 255 bytes
        try DurableWrite.replace(scratch.path(name), with: Array("x".utf8))
        #expect(try scratch.names() == [name])
    }

    @Test func renameWithoutReplacingRefusesAnExistingFile() throws {
        let scratch = try Scratch("systemsupport")
        try scratch.write("a", "source")
        try scratch.write("b", "target")
        #expect(try Rename.withoutReplacing(scratch.path("a"), to: scratch.path("b")) == false)
        #expect(try scratch.read("a") == "source")
        #expect(try scratch.read("b") == "target")
        #expect(try Rename.withoutReplacing(scratch.path("a"), to: scratch.path("c")) == true)
        #expect(try scratch.names() == ["b", "c"])
        #expect(try scratch.read("c") == "source")
    }

    @Test func renameWithoutReplacingRefusesAnExistingDirectory() throws {
        let scratch = try Scratch("systemsupport")
        for name in ["staging", "published"] {
            try FileManager.default.createDirectory(atPath: scratch.path(name), withIntermediateDirectories: false)
        }
        try scratch.write("published/disk", "ours")
        #expect(try Rename.withoutReplacing(scratch.path("staging"), to: scratch.path("published")) == false)
        #expect(try scratch.read("published/disk") == "ours")
    }

    @Test func renameWithoutReplacingAMissingSourceNamesBothPaths() throws {
        let scratch = try Scratch("systemsupport")
        let error = #expect(throws: SystemError.self) {
            try Rename.withoutReplacing(scratch.path("gone"), to: scratch.path("b"))
        }
        #expect(error == SystemError(operation: "rename", path: scratch.path("gone"), destination: scratch.path("b"), errno: ENOENT))
    }

    @Test func exchangeSwapsTwoNames() throws {
        let scratch = try Scratch("systemsupport")
        try scratch.write("a", "one")
        try scratch.write("b", "two")
        // tmpfs and ext4 support RENAME_EXCHANGE; elsewhere nothing may have changed.
        if try Rename.exchanging(scratch.path("a"), with: scratch.path("b")) {
            #expect(try scratch.read("a") == "two" && scratch.read("b") == "one")
        } else {
            #expect(try scratch.read("a") == "one" && scratch.read("b") == "two")
        }
    }

    @Test func renameReplacingReplaces() throws {
        let scratch = try Scratch("systemsupport")
        try scratch.write("a.partial", "new")
        try scratch.write("a", "old")
        try Rename.replacing(scratch.path("a.partial"), to: scratch.path("a"))
        #expect(try scratch.names() == ["a"])
        #expect(try scratch.read("a") == "new")
    }

    @Test func fsyncOfFilesAndDirectories() throws {
        let scratch = try Scratch("systemsupport")
        try scratch.write("f", "x")
        try FileSync.file(scratch.path("f"))
        try FileSync.directory(scratch.path)
        let notADirectory = #expect(throws: SystemError.self) { try FileSync.directory(scratch.path("f")) }
        #expect(notADirectory == SystemError(operation: "open", path: scratch.path("f"), errno: ENOTDIR))
        let missing = #expect(throws: SystemError.self) { try FileSync.file(scratch.path("none")) }
        #expect(missing?.errno == .noSuchFileOrDirectory)
    }

    @Test func ensureDirectoryCreatesOnceAndRefusesAFile() throws {
        let scratch = try Scratch("systemsupport")
        try Directory.ensure(scratch.path(".processed"))
        try Directory.ensure(scratch.path(".processed"))
        #expect(try scratch.names() == [".processed"])
        try scratch.write(".errors", "x")
        let error = #expect(throws: SystemError.self) { try Directory.ensure(scratch.path(".errors")) }
        #expect(error == SystemError(operation: "mkdir", path: scratch.path(".errors"), errno: ENOTDIR))
    }

    @Test func pathText() {
        #expect(PathText.parent(of: "/q/a.ova") == "/q" && PathText.parent(of: "/a") == "/" && PathText.parent(of: "a") == ".")
        #expect(PathText.lastComponent(of: "/q/a.ova") == "a.ova" && PathText.lastComponent(of: "a") == "a")
        // Never cuts a character in half.
        #expect(PathText.prefix(of: "aé€", fittingBytes: 4) == "aé")
        #expect(PathText.prefix(of: "aé€", fittingBytes: 2) == "a")
    }
}

@Suite("ReadableFile")
struct ReadableFileTests {
    @Test func opensWithTheSizeAtOpening() throws {
        let scratch = try Scratch("systemsupport")
        try scratch.write("disk.raw", "12345")
        let file = try ReadableFile(scratch.path("disk.raw"))
        defer { close(file.descriptor) }
        #expect(file.size == 5)
        var byte: UInt8 = 0
        #expect(pread(file.descriptor, &byte, 1, 4) == 1 && byte == UInt8(ascii: "5"))
    }

    @Test func aMissingFileNamesOpen() throws {
        let scratch = try Scratch("systemsupport")
        let error = #expect(throws: SystemError.self) { try ReadableFile(scratch.path("none")) }
        #expect(error == SystemError(operation: "open", path: scratch.path("none"), errno: ENOENT))
    }
}
