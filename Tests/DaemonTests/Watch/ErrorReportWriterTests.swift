import Foundation
import Testing
@testable import Daemon

@Suite("ErrorReportWriter")
struct ErrorReportWriterTests {
    @Test func writesUpstreamFieldsAndOurs() throws {
        let queue = try WatchTestDirectory()
        defer { queue.remove() }
        let source = try queue.write("bad.vmdk", String(repeating: "z", count: 2 * 1_048_576))
        let report = ErrorReport.make(
            sourcePath: source, error: "bad.vmdk: not a VMDK: bad magic", stage: "probe", jobID: "42", attempt: 2,
            history: ["discovered", "stable", "claimed", "probe started (attempt 2)", "probe failed"],
            version: "0.1.0", now: Date(timeIntervalSince1970: 1_767_225_600))
        let path = try ErrorReportWriter(watchDirectory: queue.path).write(report, name: "bad.vmdk")
        #expect(path == queue.file(".errors/bad.vmdk.error.json"))

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
        #expect(try FileManager.default.contentsOfDirectory(atPath: queue.file(".errors")) == ["bad.vmdk.error.json"])
    }

    @Test func absentValuesAreNullLikeUpstream() throws {
        let queue = try WatchTestDirectory()
        defer { queue.remove() }
        let report = ErrorReport.make(sourcePath: queue.file("gone.ova"), error: "boom", stage: nil,
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
        let queue = try WatchTestDirectory()
        defer { queue.remove() }
        try FileManager.default.createDirectory(atPath: queue.file(".errors"), withIntermediateDirectories: false)
        let report = ErrorReport.make(sourcePath: queue.file("a.img"), error: "x", stage: "convert",
                                      jobID: "1", attempt: 1, version: "0")
        let path = try ErrorReportWriter(watchDirectory: queue.path)
            .write(report, forArchivedSource: queue.file(".errors/a_2.img"))
        #expect(path == queue.file(".errors/a_2.img.error.json"))
        #expect(queue.exists(".errors/a_2.img.error.json"))
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
