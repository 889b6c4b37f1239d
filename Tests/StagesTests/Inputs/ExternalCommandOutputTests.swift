import Foundation
import Testing
import TestSupport
@testable import Stages

/// A tool's whole stdout reaches the caller, in order, however its exit races the pipe
/// readers. Under CI load a dispatch readability handler once read `qemu-img info`'s JSON
/// but stored it only after the exit handler had taken its snapshot: status 0, empty
/// stdout, a failed probe. Those handlers, torn down at a high rate, also crashed
/// libdispatch (`_dispatch_event_loop_drain`) in 2 runs of 10 of the many-commands test
/// below; pipes are now read on threads of their own.
@Suite("ExternalCommand output")
struct ExternalCommandOutputTests {
    @Test("stdout that comes in many chunks arrives whole and in order")
    func chunkedOutputArrivesInOrder() async throws {
        let result = try await ExternalCommand("sh", ["-c", "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done"]).run()
        let lines = String(decoding: result.stdout, as: UTF8.self).split(separator: "\n")
        #expect(lines.count == 2000)
        #expect(lines.first == "line-0" && lines.last == "line-1999")
        #expect(lines.enumerated().allSatisfy { $0.element == "line-\($0.offset)" })
    }

    @Test("stdout past its limit is read to the end but kept only up to the limit, and says so")
    func stdoutLimitKeepsTheStart() async throws {
        var command = ExternalCommand("sh", ["-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo done >&2"])
        command.stdoutLimit = 1000
        let result = try await command.run()
        #expect(result.status == 0 && result.stderrText == "done\n")
        #expect(result.stdout.count == 1000 && !result.stdoutComplete)
        let small = try await ExternalCommand("echo", ["fits"]).run()
        #expect(small.stdoutComplete && small.stdoutText == "fits\n")
    }

    @Test("400 short commands, 16 at a time: each one's stdout and stderr arrive whole")
    func manyShortCommandsLoseNothing() async throws {
        let descriptorsBefore = Self.openDescriptors()
        let lost = try await withThrowingTaskGroup(of: Int?.self) { group in
            var lost: [Int] = []
            for index in 0..<400 {
                if index >= 16, let finished = try await group.next(), let number = finished { lost.append(number) }
                group.addTask {
                    let result = try await ExternalCommand("sh", ["-c", "printf 'out-\(index)'; printf 'err-\(index)' >&2"]).run()
                    return result.stdoutText == "out-\(index)" && result.stderrText == "err-\(index)" ? nil : index
                }
            }
            for try await finished in group { if let number = finished { lost.append(number) } }
            return lost
        }
        #expect(lost.isEmpty, "commands whose output was lost: \(lost.sorted())")
        // Each command used to leave both its pipes open (800 here). Other tests running
        // at the same time open and close their own, hence the margin.
        let leaked = Self.openDescriptors() - descriptorsBefore
        #expect(leaked < 200, "\(leaked) more descriptors open after 400 commands")
    }

    @Test("a missing tool is a failure that names it")
    func missingToolFailsClearly() async throws {
        let command = ExternalCommand("h2k-no-such-tool", [])
        let error = await #expect(throws: StageError.self) { try await command.runChecked(about: "vm.vmdk") }
        #expect(error?.code == .toolFailed)
        #expect(error?.description.contains("h2k-no-such-tool") == true, "\(String(describing: error))")
    }

    @Test("cancelling the task stops the tool with SIGTERM, which it receives")
    func cancellationStopsTheToolWithSIGTERM() async throws {
        let task = Task { try await ExternalCommand("sleep", ["30"]).run() }
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        let result = try await task.value
        // SIGKILL would mean SIGTERM was blocked or ignored and the 2 s fallback fired.
        #expect(result.termination == .signaled(SIGTERM))
        #expect(result.status == 128 + SIGTERM)
    }

    @Test("a tool started from a pool thread, which blocks SIGTERM, has it unblocked and not ignored")
    func toolsStartWithDefaultSignalHandling() async throws {
        let status = try await ExternalCommand("grep", ["-E", "^Sig(Blk|Ign):", "/proc/self/status"]).run().stdoutText
        // Each line is a hexadecimal mask whose bit n-1 stands for signal n.
        let masks = Dictionary(uniqueKeysWithValues: status.split(separator: "\n").compactMap { line -> (String, UInt64)? in
            let parts = line.split(separator: ":").map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, let mask = UInt64(parts[1], radix: 16) else { return nil }
            return (parts[0], mask)
        })
        let signals = [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD].reduce(UInt64(0)) { $0 | (1 << UInt64($1 - 1)) }
        #expect(masks["SigBlk"].map { $0 & signals } == 0, "\(status)")
        #expect(masks["SigIgn"].map { $0 & signals } == 0, "\(status)")
    }

    static func openDescriptors() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
    }
}
