import Foundation
import Testing
import TestSupport
@testable import Daemon

@Suite("ErrorReportWriter")
struct ErrorReportWriterTests {
    @Test func writesUpstreamFieldsAndOurs() throws {
        let queue = try Scratch()
        defer { queue.remove() }
        let source = try queue.write("bad.vmdk", String(repeating: "z", count: 2 * 1_048_576))
        let report = ErrorReport.make(
            sourcePath: source, error: "bad.vmdk: not a VMDK: bad magic", stage: "probe", jobID: "42", attempt: 2,
            history: ["discovered", "stable", "claimed", "probe started (attempt 2)", "probe failed"],
            version: "0.1.0", now: Date(timeIntervalSince1970: 1_767_225_600))
        let path = try ErrorReportWriter(watchDirectory: queue.path).write(report, name: "bad.vmdk")
        #expect(path == queue.path(".errors/bad.vmdk.error.json"))

        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        #expect(Set(json.keys) == ["filename", "filepath", "file_size_mb", "timestamp", "error", "phase",
                                   "exception_traceback", "suggestion", "system_info", "job_id", "stage", "attempt",
                                   "error_code"])
        #expect(json["filename"] as? String == "bad.vmdk")
        #expect(json["filepath"] as? String == source)
        #expect(json["file_size_mb"] as? Double == 2.0)
        #expect((json["timestamp"] as? String)?.hasPrefix("20") == true)
        #expect(json["error"] as? String == "bad.vmdk: not a VMDK: bad magic")
        #expect(json["phase"] as? String == "probe")
        #expect(json["stage"] as? String == "probe")
        #expect(json["job_id"] as? String == "42")
        #expect(json["attempt"] as? Int == 2)
        #expect((json["exception_traceback"] as? [String])?.count == 5)
        #expect((json["suggestion"] as? String)?.contains("damaged") == true)
        let system = try #require(json["system_info"] as? [String: Any])
        #expect(system["hyper2kvm_version"] as? String == "0.1.0")
        #expect(system["disk_space_free_gb"] is Double)
        #expect(system["python_version"] == nil)
        // Nothing left behind but the report itself.
        #expect(try FileManager.default.contentsOfDirectory(atPath: queue.path(".errors")) == ["bad.vmdk.error.json"])
    }

    @Test func absentValuesAreNullLikeUpstream() throws {
        let queue = try Scratch()
        defer { queue.remove() }
        let report = ErrorReport.make(sourcePath: queue.path("gone.ova"), error: "boom", stage: nil,
                                      jobID: nil, attempt: nil, version: "0.1.0")
        let writer = ErrorReportWriter(watchDirectory: queue.path)
        try writer.write(report, name: "gone.ova")
        let path = try writer.write(report, name: "gone.ova")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains(#""exception_traceback" : null"#))
        #expect(text.contains(#""file_size_mb" : null"#))
        #expect(text.contains(#""job_id" : null"#))
        #expect(text.contains(#""phase" : "watch""#))
    }

    @Test func reportBesideARenamedArchive() throws {
        let queue = try Scratch()
        defer { queue.remove() }
        try FileManager.default.createDirectory(atPath: queue.path(".errors"), withIntermediateDirectories: false)
        let report = ErrorReport.make(sourcePath: queue.path("a.img"), error: "x", stage: "convert",
                                      jobID: "1", attempt: 1, version: "0")
        let path = try ErrorReportWriter(watchDirectory: queue.path)
            .write(report, forArchivedSource: queue.path(".errors/a_2.img"))
        #expect(path == queue.path(".errors/a_2.img.error.json"))
        #expect(queue.exists(".errors/a_2.img.error.json"))
    }

    /// 255 bytes, the most a file name may have: its `.error.json` would not fit.
    static func longName(_ tail: String) -> String {
        String(repeating: "é", count: 120) + String(repeating: "x", count: 255 - 240 - tail.utf8.count) + tail
    }

    @Test func aNameTooLongForItsCompanionStillGetsAUniqueTraceableReport() throws {
        let queue = try Scratch()
        defer { queue.remove() }
        let first = Self.longName("a.vmdk"), second = Self.longName("b.vmdk")
        #expect(first.utf8.count == 255 && second.utf8.count == 255)
        for name in [first, second] { try queue.write(name, "not a disk") }
        let archived = try SourceArchiver(watchDirectory: queue.path).archive([.init(name: first)], to: .errors)
        let archivedSecond = try SourceArchiver(watchDirectory: queue.path).archive([.init(name: second)], to: .errors)
        var paths: [String] = []
        for (name, archive) in [(first, archived), (second, archivedSecond)] {
            let source = try #require(archive.first?.path)
            let report = ErrorReport.make(sourcePath: queue.path(name), error: "\(name): not a VMDK", stage: "probe",
                                          jobID: "1", attempt: 1, version: "0")
            let path = try ErrorReportWriter(watchDirectory: queue.path).write(report, forArchivedSource: source)
            let reportName = (path as NSString).lastPathComponent
            #expect(reportName.utf8.count <= 255 && reportName.hasSuffix(".error.json"))
            #expect(reportName.hasPrefix(String(repeating: "é", count: 100)), "traceable: sorts beside its source")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
            #expect(json["filename"] as? String == name)
            paths.append(path)
        }
        #expect(paths[0] != paths[1], "two names sharing a long prefix get two reports")
        #expect(ErrorReportWriter.reportName(for: first) == ErrorReportWriter.reportName(for: first))
        // Nothing else was left in .errors/ (no temporary named after the long name).
        #expect(try FileManager.default.contentsOfDirectory(atPath: queue.path(".errors")).count == 4)
        #expect(ErrorReportWriter.reportName(for: "short.vmdk") == "short.vmdk.error.json")
        let note = QueueFileName.companionName(of: first, suffix: ".duplicate.json")
        #expect(note.utf8.count <= 255 && note.hasSuffix(".duplicate.json") && note != QueueFileName.companionName(of: second, suffix: ".duplicate.json"))
    }

    @Test func aLongNameCollidingInErrorsIsStillArchived() throws {
        let queue = try Scratch()
        defer { queue.remove() }
        let name = Self.longName(".vmdk")
        try FileManager.default.createDirectory(atPath: queue.path(".errors"), withIntermediateDirectories: false)
        try queue.write(".errors/" + name, "earlier")
        try queue.write(name, "now")
        let archived = try SourceArchiver(watchDirectory: queue.path).archive([.init(name: name)], to: .errors)
        let path = try #require(archived.first?.path)
        #expect((path as NSString).lastPathComponent.hasSuffix("_2.vmdk"))
        #expect(FileManager.default.fileExists(atPath: path) && !queue.exists(name))
    }

    @Test func controlCharactersInNamesAreEscapedInTheReportFile() throws {
        let queue = try Scratch()
        defer { queue.remove() }
        let name = "evil\n\u{1b}[31m\u{7f}\u{85}\u{202e}.vmdk"
        let report = ErrorReport.make(sourcePath: queue.path(name), error: "\(name): bad", stage: nil,
                                      jobID: nil, attempt: nil, version: "0")
        let path = try ErrorReportWriter(watchDirectory: queue.path).write(report, name: name)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        // No raw control byte in the file (beyond the document's own line breaks) ...
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(!text.unicodeScalars.contains { ($0.value < 0x20 && $0 != "\n") || (0x7f...0x9f).contains($0.value) || $0.value == 0x202e })
        #expect(text.contains(#"\u0085"#) && text.contains(#"\u007f"#) && text.contains(#"\u001b"#) && text.contains(#"\u202e"#))
        // ... and the name reads back exactly.
        let json = try #require(try JSONSerialization.jsonObject(with: bytes) as? [String: Any])
        #expect(json["filename"] as? String == name)
    }

    static let suggestions: [(String, String)] = [
        ("qemu-img: error while writing: No space left on device", "Free disk space"),
        ("open /q/a.vmdk: Permission denied", "can read the source"),
        ("a.vmdk: image is corrupt", "damaged"),
        ("connection to nfs server timed out", "network"),
        ("Cannot allocate memory", "out of memory"),
        ("something else", "daemon log"),
    ]

    @Test(arguments: suggestions)
    func suggestionByKeyword(message: String, expectedFragment: String) {
        #expect(FailureSuggestion.forMessage(message).contains(expectedFragment))
    }
}
