import Foundation
import Testing
import TestSupport
@testable import Stages

/// Disks with real content for the Outputs suites: an ext4 filesystem made from a directory
/// tree with `mkfs.ext4 -d`, followed by random data and a hole.
enum OutputTestImages {
    /// A 32 MiB raw disk: 24 MiB ext4 (text files, nested directories, a symlink and 2 MiB of
    /// random bytes), then 4 MiB random, then a 4 MiB hole.
    static func makeFilesystemDisk(at url: URL, scratch: URL) async throws {
        let tree = scratch.appendingPathComponent("tree-\(UUID().uuidString.prefix(6))")
        let nested = tree.appendingPathComponent("etc/deep/er")
        try FileManager.default.createDirectory(at: nested, withIntermediateDirectories: true)
        try Data("/dev/sda1 / ext4 defaults 0 1\n".utf8).write(to: tree.appendingPathComponent("etc/fstab"))
        try Data(String(repeating: "hyper2kvm test line\n", count: 5000).utf8)
            .write(to: nested.appendingPathComponent("compressible.txt"))
        try TestImageFactory.writeRandom(at: tree.appendingPathComponent("random.bin"), bytes: 2 << 20)
        try FileManager.default.createSymbolicLink(atPath: tree.appendingPathComponent("link").path,
                                                   withDestinationPath: "etc/fstab")
        try await TestImageFactory.run("mkfs.ext4", ["-q", "-F", "-L", "h2ktest", "-d", tree.path, url.path, "24M"])
        try await TestImageFactory.run("dd", ["if=/dev/urandom", "of=\(url.path)", "bs=1M", "seek=24", "count=4",
                                        "conv=notrunc", "status=none"])
        try await TestImageFactory.run("truncate", ["-s", "32M", url.path])
        try FileManager.default.removeItem(at: tree)
    }

    /// Runs a command and returns its exit status and output (stdout, then stderr), for
    /// tools whose failure is the thing under test (virt-xml-validate, virsh, sha256sum -c).
    static func status(_ executable: String, _ arguments: [String], in directory: URL? = nil) async throws -> (Int32, String) {
        let result = try await sh([executable] + arguments, in: directory, allowFailure: true)
        return (result.status, result.out + result.err)
    }

    /// Both checks domain.xml must pass: libvirt's schema and the test driver's parser.
    static func expectAcceptedByLibvirt(_ xml: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let directory = try Scratch()
        let file = directory.file("domain.xml")
        try Data(xml.utf8).write(to: file)
        let (validateStatus, validateOutput) = try await status("virt-xml-validate", [file.path, "domain"])
        #expect(validateStatus == 0, "virt-xml-validate: \(validateOutput)\n\(xml)", sourceLocation: sourceLocation)
        let (defineStatus, defineOutput) = try await status("virsh", ["-c", "test:///default", "define", file.path])
        #expect(defineStatus == 0, "virsh define: \(defineOutput)\n\(xml)", sourceLocation: sourceLocation)
    }
}
