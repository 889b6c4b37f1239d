import Foundation
import Glibc
import SystemSupport
import Testing

@Suite("Durable files")
struct DurableFileTests {
    @Test func writeCreatesThenTruncates() throws {
        let scratch = try ScratchDirectory()
        try DurableWrite.write(Array("a longer first text".utf8), to: scratch.file("out.json"))
        try DurableWrite.write(Data("short".utf8), to: scratch.file("out.json"))
        #expect(try scratch.read("out.json") == "short")
    }

    @Test func writeIntoAMissingDirectoryNamesOpenAndThePath() throws {
        let scratch = try ScratchDirectory()
        let path = scratch.file("missing/out.json")
        let error = #expect(throws: SystemError.self) { try DurableWrite.write([1, 2, 3], to: path) }
        #expect(error == SystemError(operation: "open", path: path, errno: ENOENT))
    }

    @Test func replaceSwapsTheWholeFileAndLeavesNoTemporary() throws {
        let scratch = try ScratchDirectory()
        try scratch.write("old", to: "report.error.json")
        try DurableWrite.replace(scratch.file("report.error.json"), with: Array("new".utf8))
        #expect(try scratch.read("report.error.json") == "new")
        #expect(try scratch.names() == ["report.error.json"])
    }

    @Test func aFailedReplaceLeavesNoTemporaryAndTheTargetAlone() throws {
        let scratch = try ScratchDirectory()
        // A non-empty directory cannot be renamed over: the rename is the step that fails.
        try FileManager.default.createDirectory(atPath: scratch.file("taken"), withIntermediateDirectories: false)
        try scratch.write("keep", to: "taken/inside")
        let error = #expect(throws: SystemError.self) {
            try DurableWrite.replace(scratch.file("taken"), with: Array("new".utf8))
        }
        #expect(error?.operation == "rename" && error?.destination == scratch.file("taken"))
        #expect(try scratch.names() == ["taken"])
        #expect(try scratch.read("taken/inside") == "keep")
    }

    @Test func replaceKeepsATemporaryOfAMaximalNameWithinNameMax() throws {
        let scratch = try ScratchDirectory()
        let name = String(repeating: "é", count: 127) + "x"  // 255 bytes
        try DurableWrite.replace(scratch.file(name), with: Array("x".utf8))
        #expect(try scratch.names() == [name])
    }

    @Test func renameWithoutReplacingRefusesAnExistingFile() throws {
        let scratch = try ScratchDirectory()
        try scratch.write("source", to: "a")
        try scratch.write("target", to: "b")
        #expect(try Rename.withoutReplacing(scratch.file("a"), to: scratch.file("b")) == false)
        #expect(try scratch.read("a") == "source")
        #expect(try scratch.read("b") == "target")
        #expect(try Rename.withoutReplacing(scratch.file("a"), to: scratch.file("c")) == true)
        #expect(try scratch.names() == ["b", "c"])
        #expect(try scratch.read("c") == "source")
    }

    @Test func renameWithoutReplacingRefusesAnExistingDirectory() throws {
        let scratch = try ScratchDirectory()
        for name in ["staging", "published"] {
            try FileManager.default.createDirectory(atPath: scratch.file(name), withIntermediateDirectories: false)
        }
        try scratch.write("ours", to: "published/disk")
        #expect(try Rename.withoutReplacing(scratch.file("staging"), to: scratch.file("published")) == false)
        #expect(try scratch.read("published/disk") == "ours")
    }

    @Test func renameWithoutReplacingAMissingSourceNamesBothPaths() throws {
        let scratch = try ScratchDirectory()
        let error = #expect(throws: SystemError.self) {
            try Rename.withoutReplacing(scratch.file("gone"), to: scratch.file("b"))
        }
        #expect(error == SystemError(operation: "rename", path: scratch.file("gone"), destination: scratch.file("b"), errno: ENOENT))
    }

    @Test func exchangeSwapsTwoNames() throws {
        let scratch = try ScratchDirectory()
        try scratch.write("one", to: "a")
        try scratch.write("two", to: "b")
        // tmpfs and ext4 support RENAME_EXCHANGE; elsewhere nothing may have changed.
        if try Rename.exchanging(scratch.file("a"), with: scratch.file("b")) {
            #expect(try scratch.read("a") == "two" && scratch.read("b") == "one")
        } else {
            #expect(try scratch.read("a") == "one" && scratch.read("b") == "two")
        }
    }

    @Test func renameReplacingReplaces() throws {
        let scratch = try ScratchDirectory()
        try scratch.write("new", to: "a.partial")
        try scratch.write("old", to: "a")
        try Rename.replacing(scratch.file("a.partial"), to: scratch.file("a"))
        #expect(try scratch.names() == ["a"])
        #expect(try scratch.read("a") == "new")
    }

    @Test func fsyncOfFilesAndDirectories() throws {
        let scratch = try ScratchDirectory()
        try scratch.write("x", to: "f")
        try FileSync.file(scratch.file("f"))
        try FileSync.directory(scratch.path)
        let notADirectory = #expect(throws: SystemError.self) { try FileSync.directory(scratch.file("f")) }
        #expect(notADirectory == SystemError(operation: "open", path: scratch.file("f"), errno: ENOTDIR))
        let missing = #expect(throws: SystemError.self) { try FileSync.file(scratch.file("none")) }
        #expect(missing?.errno == .noSuchFileOrDirectory)
    }

    @Test func ensureDirectoryCreatesOnceAndRefusesAFile() throws {
        let scratch = try ScratchDirectory()
        try Directory.ensure(scratch.file(".processed"))
        try Directory.ensure(scratch.file(".processed"))
        #expect(try scratch.names() == [".processed"])
        try scratch.write("x", to: ".errors")
        let error = #expect(throws: SystemError.self) { try Directory.ensure(scratch.file(".errors")) }
        #expect(error == SystemError(operation: "mkdir", path: scratch.file(".errors"), errno: ENOTDIR))
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
        let scratch = try ScratchDirectory()
        try scratch.write("12345", to: "disk.raw")
        let file = try ReadableFile(scratch.file("disk.raw"))
        defer { close(file.descriptor) }
        #expect(file.size == 5)
        var byte: UInt8 = 0
        #expect(pread(file.descriptor, &byte, 1, 4) == 1 && byte == UInt8(ascii: "5"))
    }

    @Test func aMissingFileNamesOpen() throws {
        let scratch = try ScratchDirectory()
        let error = #expect(throws: SystemError.self) { try ReadableFile(scratch.file("none")) }
        #expect(error == SystemError(operation: "open", path: scratch.file("none"), errno: ENOENT))
    }
}
