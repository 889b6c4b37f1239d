import TestSupport
import Foundation
import Testing
@testable import GuestFix
@testable import Stages

/// The guest fix runs in a child process (`hyper2kvm-fix-guest`): a crash there
/// is a stage error that names the signal, and a cancellation stops the child at once.
/// The child's test hook fires at `started`, before libguestfs is touched, so these tests
/// launch no appliance; the daemon-level tests (GuestFixChildDaemonTests) crash a child
/// with its appliance running.
@Suite("IsolatedGuestFixer", .serialized)
struct IsolatedGuestFixerTests {
    private func fixer(hook: String, once: String? = nil) throws -> IsolatedGuestFixer {
        var fixer = try IsolatedGuestFixer.locate()
        fixer.extraEnvironment = [GuestFixTestHook.variable: hook]
        if let once { fixer.extraEnvironment[GuestFixTestHook.onceVariable] = once }
        return fixer
    }

    private func fix(with fixer: IsolatedGuestFixer, in scratch: Scratch,
                     disks: [(path: URL, format: String)]? = nil) async throws -> GuestFixReport {
        try await fixer.fix(disks: disks ?? [(scratch.file("overlay.qcow2"), "qcow2")], options: ConversionOptions(),
                            identifier: "test", request: scratch.file("request.json"), answer: scratch.file("answer.json"))
    }

    @Test("the child is the hyper2kvm-fix-guest the build puts beside the test bundle")
    func locatesTheFixerBesideItsOwnProgram() throws {
        let fixer = try IsolatedGuestFixer.locate(environment: [:])
        #expect(URL(fileURLWithPath: fixer.executable).lastPathComponent == "hyper2kvm-fix-guest")
        #expect(FileManager.default.isExecutableFile(atPath: fixer.executable))
        let own = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        #expect(URL(fileURLWithPath: fixer.executable).deletingLastPathComponent().path == own.deletingLastPathComponent().path)
        let overridden = try IsolatedGuestFixer.locate(environment: [IsolatedGuestFixer.executableVariable: "/opt/fixer"])
        #expect(overridden.executable == "/opt/fixer")
    }

    @Test("a missing fixer fails the stage naming the path looked at and the override")
    func aMissingFixerNamesThePathLookedAt() throws {
        let scratch = try Scratch("fixer-lookup")
        // A hyper2kvm with nothing beside it (as if only the daemon had been copied).
        let own = scratch.file("hyper2kvm")
        let error = #expect(throws: StageError.self) {
            try IsolatedGuestFixer.executablePath(environment: [:], ownExecutable: own)
        }
        let expected = scratch.file("hyper2kvm-fix-guest").path
        #expect(error?.file == expected)
        #expect(error?.message.contains("(looked at \(expected), beside \(own.path))") == true, "\(String(describing: error))")
        #expect(error?.message.contains("HYPER2KVM_FIX_GUEST_EXECUTABLE") == true)
    }

    @Test func theHookIsReadFromTheEnvironmentOnly() {
        #expect(GuestFixTestHook.fromEnvironment([:]) == nil)
        #expect(GuestFixTestHook.fromEnvironment([GuestFixTestHook.variable: "explode@started"]) == nil)
        #expect(GuestFixTestHook.fromEnvironment([GuestFixTestHook.variable: "kill"]) == nil)
        let hook = GuestFixTestHook.fromEnvironment([GuestFixTestHook.variable: "abort@launched", GuestFixTestHook.onceVariable: "/x"])
        #expect(hook?.action == .abort && hook?.point == "launched" && hook?.onceFile == "/x")
    }

    @Test(arguments: [("kill", "signal 9: Killed"), ("abort", "signal 6: Aborted")])
    func aChildThatDiesOfASignalFailsTheStageNamingIt(action: String, expected: String) async throws {
        let scratch = try Scratch()
        let error = await #expect(throws: StageError.self) {
            try await fix(with: try fixer(hook: "\(action)@started"), in: scratch)
        }
        // Retryable: the retry policy gives a crashed fixer another appliance.
        #expect(error?.code == .toolFailed)
        #expect(error?.message.contains("the guest fixer crashed (\(expected))") == true, "\(String(describing: error))")
        #expect(error?.message.contains("the daemon is unaffected") == true)
        #expect(error?.file == scratch.file("overlay.qcow2").path)
        // The work files are gone: a crash leaves nothing for the next attempt to trip on.
        #expect(!FileManager.default.fileExists(atPath: scratch.file("request.json").path))
    }

    @Test func aStageErrorInTheChildComesBackAsThatError() async throws {
        let scratch = try Scratch()
        let fixer = try IsolatedGuestFixer.locate()
        let error = await #expect(throws: StageError.self) { try await fix(with: fixer, in: scratch, disks: []) }
        #expect(error?.code == .badInput)
        #expect(error?.message == "fix-guest: no disks given", "\(String(describing: error))")
    }

    @Test func aCancelledFixStopsTheChildAtOnce() async throws {
        let scratch = try Scratch()
        let fired = scratch.file("stalled")
        let fixer = try fixer(hook: "stall@started", once: fired.path)
        let request = scratch.file("request.json")
        let task = Task { try await fix(with: fixer, in: scratch) }
        var waited = 0
        while !FileManager.default.fileExists(atPath: fired.path), waited < 300 {
            try await Task.sleep(for: .milliseconds(100))
            waited += 1
        }
        #expect(FileManager.default.fileExists(atPath: fired.path), "the child never reached its stall")
        #expect(!processes(mentioning: request.path).isEmpty, "the stalled child is not running")
        let cancelled = ContinuousClock.now
        task.cancel()
        let outcome = await task.result
        let seconds = (ContinuousClock.now - cancelled).components.seconds
        #expect(throws: CancellationError.self) { try outcome.get() }
        // SIGTERM to the group, then SIGKILL after ExternalCommand's 2 s grace: about 2 s here,
        // but a loaded 2-core host once took 5. The stall itself never ends, so any bound far
        // below the fixer's 2 h wall clock tells "stopped by the cancellation" apart.
        #expect(seconds < 60, "took \(seconds) s to stop")
        #expect(processes(mentioning: request.path).isEmpty, "the child outlived its cancellation")
    }
}
