import Foundation
import Testing
import TestSupport
@testable import Stages

@Suite("ChecksumFile")
struct ChecksumFileTests {
    @Test("sha256sum -c accepts the file")
    func verifiedBySha256sum() async throws {
        let directory = try Scratch()
        let names = ["web01.qcow2", "domain.xml", "metadata.json", "web01-disk 2.qcow2"]
        var entries: [ChecksumFile.Entry] = []
        for name in names {
            let file = directory.file(name)
            try TestImageFactory.writeRandom(at: file, bytes: 100_000 + name.count)
            entries.append(.init(name: name, sha256: "sha256:" + (try FileDigest.sha256(of: file))))
        }
        let sums = try ChecksumFile(entries: entries)
        try sums.write(to: directory.file(ChecksumFile.fileName))

        let (status, output) = try await OutputTestImages.status("sha256sum", ["--strict", "-c", ChecksumFile.fileName], in: directory.url)
        #expect(status == 0, "\(output)")
        #expect(output.components(separatedBy: ": OK").count - 1 == names.count, "\(output)")

        // And it notices a change.
        try TestImageFactory.writeRandom(at: directory.file("domain.xml"), bytes: 10)
        let (changedStatus, _) = try await OutputTestImages.status("sha256sum", ["-c", ChecksumFile.fileName], in: directory.url)
        #expect(changedStatus != 0)
    }

    @Test("lines are sorted by name, two spaces, lowercase hex")
    func format() throws {
        let a = String(repeating: "A", count: 64)
        let b = String(repeating: "0", count: 64)
        let text = try ChecksumFile(entries: [.init(name: "b.qcow2", sha256: a), .init(name: "a.xml", sha256: b)]).rendered()
        #expect(text == "\(b)  a.xml\n\(String(repeating: "a", count: 64))  b.qcow2\n")
    }

    @Test("refuses names and digests sha256sum would misread", arguments: [
        ("../x", String(repeating: "a", count: 64)),
        ("dir/x", String(repeating: "a", count: 64)),
        ("new\nline", String(repeating: "a", count: 64)),
        ("back\\slash", String(repeating: "a", count: 64)),
        ("", String(repeating: "a", count: 64)),
        ("ok", "abc"),
        ("ok", String(repeating: "g", count: 64)),
    ])
    func refusals(name: String, digest: String) {
        #expect(throws: StageError.self) { try ChecksumFile(entries: [.init(name: name, sha256: digest)]) }
    }

    @Test("refuses a name listed twice")
    func duplicates() {
        let digest = String(repeating: "a", count: 64)
        #expect(throws: StageError.self) {
            try ChecksumFile(entries: [.init(name: "x", sha256: digest), .init(name: "x", sha256: digest)])
        }
    }
}
