import Foundation
import Testing
import TestSupport

/// The shared test helpers do what the suites rely on.
@Suite("TestSupport")
struct TestSupportTests {
    @Test("a Scratch directory exists while the value lives and is gone after it")
    func scratchIsRemoved() throws {
        var scratch: Scratch? = try Scratch("support")
        let path = try #require(scratch?.path)
        try scratch?.write("b.txt", "x")
        #expect(FileManager.default.fileExists(atPath: path + "/b.txt"))
        #expect(scratch?.listing() == ["b.txt"])
        scratch = nil
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test("sh returns stdout and stderr, and throws with the tool's stderr when it fails")
    func shReportsFailures() async throws {
        let ok = try await sh(["sh", "-c", "echo out; echo err >&2"])
        #expect(ok.status == 0 && ok.out == "out\n" && ok.err == "err\n")
        let failed = try await sh(["sh", "-c", "echo why >&2; exit 3"], allowFailure: true)
        #expect(failed.status == 3 && failed.err == "why\n")
        await #expect { try await sh(["sh", "-c", "echo why >&2; exit 3"]) } throws: { error in
            (error as? TestToolFailure).map { $0.status == 3 && $0.stderr == "why\n" } ?? false
        }
        let scratch = try Scratch("support")
        #expect(try await sh(["pwd"], in: scratch.url).out == scratch.url.resolvingSymlinksInPath().path + "\n")
        #expect(try await sh(["sh", "-c", "echo $H2K_SUPPORT"], environment: ["H2K_SUPPORT": "set"]).out == "set\n")
    }

    @Test("processes(mentioning:) finds a running child by its command line")
    func findsProcesses() async throws {
        let marker = "h2k-support-\(UUID().uuidString.prefix(8))"
        // Long enough to be seen on a loaded host (a 2 s child was missed there); ended below.
        // One process holds the marker in its own command line, so ending it ends the child.
        async let sleeper = sh(["python3", "-c", "import time; time.sleep(60)", marker], allowFailure: true)
        var found: [Int32] = []
        for _ in 0..<400 where found.isEmpty {
            try await Task.sleep(for: .milliseconds(50))
            found = processes(mentioning: marker)
        }
        #expect(!found.isEmpty)
        for pid in found { kill(pid, SIGTERM) }
        _ = try await sleeper
        #expect(processes(mentioning: marker).isEmpty)
    }
}
