import Foundation
import Testing
import TestSupport
@testable import Stages

/// A tool cannot wedge the daemon: a FIFO named as a backing file, or a tool that ignores
/// SIGTERM, ends at its wall-clock limit, together with everything it started.
///
/// No test bounds the elapsed time: on a loaded 2-core host, in the whole suite, timers fire
/// late (seen: 47 s for a 1 s limit, and these tests took over 3 minutes at a load average
/// of 30). A tool that was never stopped hangs the test instead, which the time limit turns
/// into a failure; it is generous so that only a hang reaches it.
@Suite("ExternalCommand teardown and limits", .timeLimit(.minutes(10)))
struct ExternalCommandTeardownTests {
    private static func limit(_ duration: Duration, blame: StageError.Code = .toolFailed) -> ExternalCommand.Limits {
        ExternalCommand.Limits(wallClock: .init(duration, blame: blame, because: "the test's limit"))
    }

    /// Whether `pid` is gone (or a zombie waiting for init to reap it: dead all the same).
    private static func isGone(_ pid: pid_t) -> Bool {
        guard let stat = ProcessStat(pid) else { return true }
        return stat.state == "Z"
    }

    private static func waitUntilGone(_ pid: pid_t, within seconds: Double = 5) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if isGone(pid) { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return isGone(pid)
    }

    @Test("a tool that ignores SIGTERM is killed at its wall-clock limit, with its child: no orphan")
    func wallClockKillsTheWholeGroup() async throws {
        let directory = try Scratch()
        let pidFile = directory.file("grandchild.pid")
        // The shell ignores SIGTERM, and so does the sleep it starts (ignored signals are inherited).
        let command = ExternalCommand("sh", ["-c", "trap '' TERM; sleep 1000 & echo $! > \"$1\"; wait", "sh", pidFile.path],
                                      limits: Self.limit(.seconds(1)))
        let error = await #expect(throws: StageError.self) { try await command.run() }
        #expect(error?.code == .toolFailed)
        #expect(error?.message.contains("sh was stopped after 1 s, its wall-clock limit (the test's limit)") == true,
                "\(String(describing: error))")
        let text = try String(contentsOf: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let grandchild = try #require(pid_t(text))
        #expect(try await Self.waitUntilGone(grandchild), "the tool's child \(grandchild) outlived it")
    }

    @Test("cancelling the task stops the tool and what it started")
    func cancellationStopsTheWholeGroup() async throws {
        let directory = try Scratch()
        let pidFile = directory.file("grandchild.pid")
        let command = ExternalCommand("sh", ["-c", "sleep 1000 & echo $! > \"$1\"; wait", "sh", pidFile.path])
        let task = Task { try await command.run() }
        var grandchild: pid_t?
        for _ in 0..<100 where grandchild == nil {
            try await Task.sleep(for: .milliseconds(50))
            grandchild = (try? String(contentsOf: pidFile, encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        task.cancel()
        let result = try await task.value
        #expect(result.termination == .signaled(SIGTERM))
        let pid = try #require(grandchild)
        #expect(try await Self.waitUntilGone(pid), "the tool's child \(pid) outlived it")
    }

    @Test("a tool that leaves a child behind when it exits does not leave it running")
    func stragglersDieWithTheTool() async throws {
        let directory = try Scratch()
        let pidFile = directory.file("straggler.pid")
        // The child keeps no pipe of ours (its output goes to /dev/null), so the run ends with the shell.
        let result = try await ExternalCommand("sh", ["-c", "sleep 1000 >/dev/null 2>&1 & echo $! > \"$1\"", "sh", pidFile.path]).run()
        #expect(result.termination == .exited(0))
        let text = try String(contentsOf: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let straggler = try #require(pid_t(text))
        #expect(try await Self.waitUntilGone(straggler), "the tool's child \(straggler) outlived it")
    }

    @Test("a task cancelled before the tool starts never starts it")
    func cancellationBeforeStartIsHonoured() async throws {
        let directory = try Scratch()
        let marker = directory.file("started")
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await ExternalCommand("touch", [marker.path]).run()
        }
        await #expect(throws: CancellationError.self) { try await task.value }
        try await Task.sleep(for: .milliseconds(200))
        #expect(!FileManager.default.fileExists(atPath: marker.path))
    }

    @Test("a tool killed by a signal is reported as that signal")
    func aSignalIsReportedAsASignal() async throws {
        let command = ExternalCommand("sh", ["-c", "echo dying >&2; kill -SEGV $$"])
        let result = try await command.run()
        #expect(result.termination == .signaled(SIGSEGV))
        #expect(result.status == 128 + SIGSEGV)
        let error = #expect(throws: StageError.self) { try result.requireSuccess(of: command, about: "x.vmdk") }
        #expect(error?.message == "sh failed: killed by signal 11 (Segmentation fault): dying", "\(String(describing: error))")
    }

    @Test("stderr beyond the cap keeps its start and its end, with a marker between")
    func stderrIsCapped() async throws {
        let result = try await ExternalCommand("sh", ["-c", "{ printf START; head -c 200000 /dev/zero | tr '\\0' x; printf END; } >&2"]).run()
        #expect(result.termination == .exited(0))
        let text = result.stderrText
        #expect(text.hasPrefix("START"))
        #expect(text.hasSuffix("END"))
        let dropped = 5 + 200_000 + 3 - ExternalCommand.stderrCap
        #expect(text.contains("[… \(dropped) bytes of output left out …]"), "\(text.prefix(100))")
        #expect(result.stderr.count < ExternalCommand.stderrCap + 100)
    }

    /// qemu-img opens a backing file to read the chain; a FIFO with no writer blocks that
    /// open forever, at no CPU cost, so only a wall clock ends it.
    @Test("qemu-img info on a qcow2 whose backing file is a FIFO ends at the limit with a clear error")
    func aFIFOBackingFileEndsAtTheLimit() async throws {
        let directory = try Scratch()
        let fifo = directory.file("fifo"), image = directory.file("x.qcow2")
        #expect(mkfifo(fifo.path, 0o600) == 0)
        // -u: qemu-img create would itself block opening the FIFO to check it.
        try await ExternalCommand("qemu-img", ["create", "-q", "-u", "-f", "qcow2", "-b", "fifo", "-F", "raw", image.path, "1M"])
            .runChecked()
        var limits = ExternalCommand.Limits.untrustedProbe
        limits.wallClock?.duration = .seconds(2)
        let command = ExternalCommand("qemu-img", ["info", "--backing-chain", "--output=json", image.path], limits: limits)
        let error = await #expect(throws: StageError.self) { try await command.run(about: image.path) }
        #expect(error?.code == .badInput)
        #expect(error?.file == image.path)
        #expect(error?.message.contains("qemu-img was stopped after 2 s, its wall-clock limit (a probe of an untrusted image") == true,
                "\(String(describing: error))")
    }

    @Test("a tool within its limit returns normally")
    func aQuickToolIsUnaffectedByItsLimit() async throws {
        let result = try await ExternalCommand("sh", ["-c", "echo ok"], limits: Self.limit(.seconds(30))).run()
        #expect(result.termination == .exited(0))
        #expect(result.stdoutText == "ok\n")
    }
}
