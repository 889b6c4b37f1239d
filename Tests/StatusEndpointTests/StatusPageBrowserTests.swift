import Foundation
import Testing
import TestSupport

/// The status page in headless Chromium (Debian's `chromium`) against the real daemon
/// converting a real disk: the page, run by the browser, shows the job's progress move and then
/// the job done. Screenshots are kept as artifacts (their paths are printed); look at them
/// after a change to the page.
@Suite(.serialized, .tags(.slow), .notInQuickRun) struct StatusPageBrowserTests {
    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }

    struct Row: Equatable {
        let job: Int
        let state: String
        let percent: Int?
    }

    /// The job rows of the page's DOM after its script ran (`data-job`, `data-state` and the
    /// progress bar's `aria-valuenow`).
    static func rows(in dom: String) -> [Row] {
        let pattern = /<tr data-job="(\d+)" data-state="([a-z-]+)">(.*?)<\/tr>/.dotMatchesNewlines()
        return dom.matches(of: pattern).compactMap { match in
            guard let job = Int(match.output.1) else { return nil }
            let percent = match.output.3.firstMatch(of: /aria-valuenow="(\d+)"/).flatMap { Int($0.output.1) }
            return Row(job: job, state: String(match.output.2), percent: percent)
        }
    }

    func browse(_ scratch: Scratch, _ url: String, _ mode: [String]) async throws -> String {
        guard let chromium = Self.chromium else { throw FixtureError("chromium is not installed (scripts/install-deps)") }
        let result = try await sh(["timeout", "60", chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                   "--user-data-dir=\(scratch.path("chromium-profile"))", "--window-size=1400,900",
                                   "--virtual-time-budget=2500"] + mode + [url], allowFailure: true)
        guard result.status == 0 else { throw FixtureError("chromium exited \(result.status): \(result.err.suffix(2000))") }
        return result.out
    }

    /// A disk whose conversion takes long enough to be watched: ext4 holding 768 MiB of random
    /// bytes, converted to zstd-compressed qcow2, then hashed.
    func makeSlowSource(_ scratch: Scratch) async throws -> String {
        let content = scratch.path("content")
        try FileManager.default.createDirectory(atPath: content, withIntermediateDirectories: true)
        try await sh(["dd", "if=/dev/urandom", "of=\(content)/random.bin", "bs=1M", "count=768", "status=none"])
        let raw = scratch.path("big.raw")
        try await sh(["truncate", "-s", "900M", raw])
        try await sh(["mkfs.ext4", "-q", "-F", "-d", content, raw])
        try FileManager.default.removeItem(atPath: content)
        return raw
    }

    @Test(.enabled(if: chromium != nil, "chromium is not installed (scripts/install-deps)"))
    func pageShowsProgressThenCompletion() async throws {
        let scratch = try Scratch("status-page")
        let daemon = try EndpointDaemon(scratch: scratch, extraConfig: "compress: true")
        #expect(await daemon.waitForEndpoint(), "log:\n\(daemon.output)")
        let source = try await makeSlowSource(scratch)

        // Before any job: the page loads and says so.
        let empty = try await browse(scratch, daemon.url + "/", ["--dump-dom"])
        #expect(empty.contains("nothing running or waiting") && empty.contains("ready"), "\(empty.prefix(3000))")

        // A failed job, named by its attacker: the page shows the name and error as text.
        let garbage = scratch.path("garbage.vmdk")
        try await sh(["dd", "if=/dev/urandom", "of=\(garbage)", "bs=64k", "count=2", "status=none"])
        try FileManager.default.moveItem(atPath: garbage, toPath: daemon.queue + "/x<b id=injected>y.vmdk")
        try FileManager.default.moveItem(atPath: source, toPath: daemon.queue + "/big.raw")
        var seen: [Row] = []
        var progressShot: String?
        let deadline = Date().addingTimeInterval(600)
        while Date() < deadline {
            let rows = Self.rows(in: try await browse(scratch, daemon.url + "/", ["--dump-dom"]))
            seen += rows.filter { !seen.contains($0) }
            if progressShot == nil, let row = rows.first, let percent = row.percent, percent > 0, percent < 100 {
                let path = scratch.path("status-page-progress.png")
                _ = try await browse(scratch, daemon.url + "/", ["--screenshot=\(path)"])
                progressShot = path
            }
            if rows.contains(where: { $0.state == "archived" }) { break }
        }
        let moving = Set(seen.compactMap { $0.state == "stage-started" ? $0.percent : nil }.filter { $0 > 0 && $0 < 100 })
        #expect(!moving.isEmpty, "the page never showed a job in progress; rows seen: \(seen)\nlog:\n\(daemon.output)")
        #expect(seen.contains { $0.state == "archived" }, "the page never showed the job done; rows seen: \(seen)")
        if let first = seen.firstIndex(where: { moving.contains($0.percent ?? -1) }),
           let done = seen.firstIndex(where: { $0.state == "archived" }) {
            #expect(first < done)
        }

        let dom = try await browse(scratch, daemon.url + "/", ["--dump-dom"])
        #expect(Self.rows(in: dom).contains { $0.state == "failed" }, "no failed row")
        #expect(dom.contains("x&lt;b id=injected&gt;y.vmdk") && !dom.contains("<b id=\"injected\">"), "\(dom)")
        #expect(dom.contains("no known format") && dom.contains("/api/v1/jobs/"))

        let final = scratch.path("status-page-done.png")
        _ = try await browse(scratch, daemon.url + "/", ["--screenshot=\(final)"])
        #expect(FileManager.default.fileExists(atPath: final))
        // Kept past the scratch directory's removal, for a person to look at.
        let kept = FileManager.default.temporaryDirectory.appendingPathComponent("h2k-test-artifacts")
        try FileManager.default.createDirectory(at: kept, withIntermediateDirectories: true)
        for shot in [progressShot, final].compactMap({ $0 }) {
            let target = kept.appendingPathComponent(URL(fileURLWithPath: shot).lastPathComponent)
            try? FileManager.default.removeItem(at: target)
            try FileManager.default.copyItem(atPath: shot, toPath: target.path)
            print("status page screenshot: \(shot) (kept as \(target.path))")
        }
        #expect(await daemon.stop() == 0, "log:\n\(daemon.output)")
    }
}
