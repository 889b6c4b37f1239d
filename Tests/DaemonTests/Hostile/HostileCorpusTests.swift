import Foundation
import Testing
import TestSupport
import Stages

extension Tag {
    @Tag static var hostileCorpus: Self
}

/// The attacker's corpus (`scripts/hostile-corpus`) through the real binary, one
/// `hyper2kvm convert FILE --output-dir DIR --no-fix` per case, run from a working directory
/// that holds a planted secret (`state/journal.sqlite`). Every case must end on its own
/// within the bound, by exit (never a signal), refused ones with an error naming the file,
/// valid ones converted; no byte of the secret may appear in anything the run produced,
/// decoded images included; a refused input may not grow the output directory past 64 MiB.
///
/// Knobs (environment): HYPER2KVM_HOSTILE_CASES=id-or-class,… (a subset),
/// HYPER2KVM_HOSTILE_CASE_SECONDS (default 120), HYPER2KVM_HOSTILE_PARALLEL (default 3),
/// HYPER2KVM_HOSTILE_REPORT=FILE (the results table is also written there).
@Suite("HostileCorpus", .serialized, .tags(.hostileCorpus, .slow), .notInQuickRun)
struct HostileCorpusTests {
    static let environment = ProcessInfo.processInfo.environment
    static let caseSeconds = TimeInterval(environment["HYPER2KVM_HOSTILE_CASE_SECONDS"] ?? "") ?? 120
    static let parallel = max(1, Int(environment["HYPER2KVM_HOSTILE_PARALLEL"] ?? "") ?? 3)
    /// Cases also run once with the guest fix on (libguestfs then reads the disk too; about
    /// a minute under TCG). HYPER2KVM_HOSTILE_FIX=0 leaves them out.
    static let withGuestFix = environment["HYPER2KVM_HOSTILE_FIX"] == "0" ? [] : ["leak-qcow2-datafile-absolute"]
    static let guestFixSuffix = "+fix"

    @Test func everyHostileInputEndsCleanlyAndLeaksNothing() async throws {
        let host = try await HostileHost()
        let fixRuns = host.cases.filter { Self.withGuestFix.contains($0.id) }.map { hostileCase in
            HostileCase(id: hostileCase.id + Self.guestFixSuffix, class: hostileCase.class, file: hostileCase.file,
                        expect: hostileCase.expect, why: hostileCase.why + " (guest fix on)")
        }
        let selected = Self.selection(host.cases + fixRuns)
        #expect(host.cases.count >= 40, "the corpus is too small: \(host.cases.count) cases")
        #expect(Set(host.cases.map(\.class)) == ["leak", "trap", "wedge", "fill", "tie-up", "minor", "good"])

        let secretBefore = try await TestDisks.sha256(host.secretPath)
        let verdicts = try await run(selected, host: host)
        let table = Self.table(verdicts)
        print(table)
        if let report = Self.environment["HYPER2KVM_HOSTILE_REPORT"] {
            try table.write(toFile: report, atomically: true, encoding: .utf8)
        }
        // A data file or extent is opened for writing by some qemu paths: the host file must come out untouched.
        #expect(try await TestDisks.sha256(host.secretPath) == secretBefore, "the planted secret was modified by a run")
        for verdict in verdicts {
            #expect(verdict.failures.isEmpty,
                    "\(verdict.hostileCase.id) [\(verdict.hostileCase.class)] \(verdict.hostileCase.why): \(verdict.failures.joined(separator: "; "))")
        }
    }

    /// The filesystem a fill case writes to: smaller than every fill case expands to.
    static let fillFilesystemMiB = 48

    /// Wedges start at once (they idle until killed, so they only cost wall time); the
    /// rest run `parallel` at a time, the slow ones (guest fix, fills, tie-ups) first.
    private func run(_ cases: [HostileCase], host: HostileHost) async throws -> [HostileVerdict] {
        func slowFirst(_ hostileCase: HostileCase) -> Int {
            hostileCase.id.hasSuffix(Self.guestFixSuffix) ? 0 : ["fill": 1, "tie-up": 2][hostileCase.class] ?? 3
        }
        var waiting = cases.filter { $0.class != "wedge" }.enumerated()
            .sorted { (slowFirst($0.element), $0.offset) < (slowFirst($1.element), $1.offset) }.map(\.element)
        var running: [(HostileCase, BoundedProductRun)] = []
        var verdicts: [HostileVerdict] = []
        var mounted: [String] = []
        defer { for path in mounted { _ = try? shBlocking(["umount", "-l", path], allowFailure: true) } }
        func start(_ hostileCase: HostileCase) async throws {
            let directory = host.scratch.path("runs/\(hostileCase.id)")
            let output = directory + "/out"
            let fix = hostileCase.id.hasSuffix(Self.guestFixSuffix)
            if hostileCase.class == "fill" {
                // A bomb that fits is a legitimate image: it is converted. The promise is that
                // one that does not fit is refused before it fills the disk, so each fill
                // case gets a filesystem of its own, smaller than what it expands to.
                try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
                try await sh(["mount", "-t", "tmpfs", "-o", "size=\(Self.fillFilesystemMiB)m", "h2k-fill", output])
                mounted.append(output)
            }
            let arguments = [ProductBinary.path, "convert", host.path(of: hostileCase), "--output-dir", output]
                + (fix ? [] : ["--no-fix"])
            let run = try BoundedProductRun(label: hostileCase.id, arguments: arguments,
                                            workingDirectory: host.workingDirectory, directory: directory,
                                            outputDirectory: output, environment: RealGuestTesting.libguestfsEnvironment,
                                            seconds: Self.caseSeconds)
            running.append((hostileCase, run))
        }
        for hostileCase in cases where hostileCase.class == "wedge" { try await start(hostileCase) }
        while !running.isEmpty || !waiting.isEmpty {
            while running.filter({ $0.0.class != "wedge" }).count < Self.parallel, !waiting.isEmpty {
                try await start(waiting.removeFirst())
            }
            for (hostileCase, run) in running where run.poll() {
                let judge = HostileJudge(marker: host.marker, workingDirectory: host.workingDirectory,
                                         sourcePath: host.path(of: hostileCase))
                // Judging decodes the outputs and scans them (seconds each): on a thread of its own.
                let work = Unchecked((judge, hostileCase, run))
                verdicts.append(try await BlockingWork.run("h2k-test-judge") { Unchecked(work.value.0.judge(work.value.1, run: work.value.2)) }.value)
            }
            running.removeAll { $0.1.finished != nil }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        let order = Dictionary(uniqueKeysWithValues: cases.enumerated().map { ($1.id, $0) })
        return verdicts.sorted { order[$0.hostileCase.id] ?? 0 < order[$1.hostileCase.id] ?? 0 }
    }

    private static func selection(_ cases: [HostileCase]) -> [HostileCase] {
        guard let filter = environment["HYPER2KVM_HOSTILE_CASES"], !filter.isEmpty else { return cases }
        let wanted = filter.split(separator: ",").map(String.init)
        return cases.filter { hostileCase in wanted.contains { hostileCase.id.hasPrefix($0) || hostileCase.class == $0 } }
    }

    /// case, class, expected, got, seconds, peak MiB, failures; then the failing count per class.
    static func table(_ verdicts: [HostileVerdict]) -> String {
        let width = max(4, verdicts.map(\.hostileCase.id.count).max() ?? 4)
        func pad(_ text: String, _ count: Int) -> String { text.padding(toLength: max(count, text.count), withPad: " ", startingAt: 0) }
        var lines = ["\(pad("case", width))  \(pad("class", 6))  \(pad("expected", 9))  \(pad("got", 12))  \(pad("time", 7))  \(pad("peak", 8))  result"]
        for verdict in verdicts {
            let result = verdict.failures.isEmpty ? "ok" : "FAIL: " + verdict.failures.joined(separator: "; ")
            lines.append("\(pad(verdict.hostileCase.id, width))  \(pad(verdict.hostileCase.class, 6))  "
                         + "\(pad(verdict.hostileCase.expect.rawValue, 9))  \(pad(verdict.got, 12))  "
                         + "\(pad(String(format: "%.1fs", verdict.seconds), 7))  \(pad("\(verdict.peakOutputBytes >> 20)MiB", 8))  \(result)")
        }
        lines.append("")
        var classes: [String] = []
        for verdict in verdicts where !classes.contains(verdict.hostileCase.class) { classes.append(verdict.hostileCase.class) }
        for klass in classes {
            let inClass = verdicts.filter { $0.hostileCase.class == klass }
            lines.append("\(pad(klass, 6))  \(inClass.count) cases, \(inClass.filter { $0.failures.isEmpty }.count) pass, \(inClass.filter { !$0.failures.isEmpty }.count) fail")
        }
        lines.append("total   \(verdicts.count) cases, \(verdicts.filter { !$0.failures.isEmpty }.count) fail")
        lines.append("")
        lines.append("error lines of the runs that exited non-zero (is each refusal for the reason the case is about?):")
        for verdict in verdicts {
            if let error = verdict.error { lines.append("\(pad(verdict.hostileCase.id, width))  \(error)") }
        }
        return lines.joined(separator: "\n")
    }
}
