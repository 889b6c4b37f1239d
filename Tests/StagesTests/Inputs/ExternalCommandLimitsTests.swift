import Foundation
import Testing
import TestSupport
@testable import Stages

/// The probe limits must hold back a hostile image, never a healthy qemu-img whose thread
/// pool grows. `qemu-img bench` with 64 requests in flight makes qemu start a thread per
/// request, which is what a slow disk under load does to `qemu-img check`.
@Suite("ExternalCommand under probe limits")
struct ExternalCommandLimitsTests {
    private func benchImage() async throws -> Scratch {
        let directory = try Scratch()
        try await ExternalCommand("qemu-img", ["create", "-f", "raw", directory.file("bench.raw").path, "64M"]).runChecked()
        return directory
    }

    private func bench(_ image: URL, environment: [String: String]? = nil) -> ExternalCommand {
        ExternalCommand("qemu-img", ["bench", "-f", "raw", "-i", "threads", "-d", "64", "-c", "4000", "-s", "4096", image.path],
                        limits: .untrustedProbe, environment: environment)
    }

    @Test func aQemuImgWithSixtyFourThreadsRunsUnderTheOneGiBProbeLimit() async throws {
        let directory = try await benchImage()
        let result = try await bench(directory.file("bench.raw")).run()
        #expect(result.status == 0, "\(result.stderrText)")
        #expect(result.hostResourceFailure == nil)
    }

    /// With glibc's default arenas the same run cannot create its threads; that failure
    /// is the host's, so it is retryable and does not call the image damaged.
    @Test func aThreadThatCannotBeCreatedIsATransientToolFailureNotBadInput() async throws {
        let directory = try await benchImage()
        let image = directory.file("bench.raw")
        let command = bench(image, environment: ["MALLOC_ARENA_MAX": "64"])
        let result = try await command.run()
        #expect(result.status != 0)
        #expect(result.hostResourceFailure != nil, "\(result.stderrText)")
        let error = #expect(throws: StageError.self) { try result.requireSuccess(of: command, about: image.path) }
        #expect(error?.code == .toolFailed)
        #expect(error?.file == image.path)
        #expect(error?.message.contains("the input is not at fault") == true, "\(String(describing: error))")
    }

    @Test func onlyLimitedCommandsChangeTheChildsMallocArenas() {
        #expect(ExternalCommand("qemu-img", [], limits: .untrustedProbe).childEnvironment["MALLOC_ARENA_MAX"] == "1")
        #expect(ExternalCommand("qemu-img", []).childEnvironment == ["LC_ALL": "C"])
        #expect(ExternalCommand("qemu-img", [], environment: ["A": "b"]).childEnvironment == ["A": "b", "LC_ALL": "C"])
    }

    /// Callers recognise failures by the tool's English words; a daemon started under a
    /// French locale must not turn "No space left on device" into something else.
    @Test func toolsRunInTheCLocale() async throws {
        let result = try await ExternalCommand("sh", ["-c", "echo $LC_ALL"], environment: nil).run()
        #expect(result.stdoutText == "C\n")
    }

    @Test func aCopyGetsTenMinutesPlusTwentyMiBPerSecond() {
        #expect(ExternalCommand.Limits.copying(bytes: 0).wallClock?.duration == .seconds(600))
        #expect(ExternalCommand.Limits.copying(bytes: 20 << 30).wallClock?.duration == .seconds(600 + 1024))
        // 2 TiB: 29 h 20 min, and the largest size does not overflow.
        #expect(ExternalCommand.Limits.copying(bytes: 2 << 40).wallClock?.duration == .seconds(600 + 104_857))
        #expect(ExternalCommand.Limits.copying(bytes: .max).wallClock != nil)
        #expect(ExternalCommand.Limits.copying(bytes: 1).wallClock?.blame == .toolFailed)
        #expect(ExternalCommand.Limits.untrustedProbe.wallClock?.blame == .badInput)
    }
}
