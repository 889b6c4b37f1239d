import Foundation
import Testing
import TestSupport

/// The boot matrix's rotation: which case a commit boots by default.
@Suite struct GuestRotationTests {
    @Test func aCommitPicksTheCaseItsFirstEightHexDigitsNameModTheMatrixSize() {
        // 0x6bcd067e = 1808598142; 1808598142 mod 7 = 2.
        #expect(GuestRotation.rotationIndex(commit: "6bcd067e1234", count: 7) == 2)
        #expect(GuestRotation.rotationIndex(commit: "00000007ffff", count: 7) == 0)
        #expect(GuestRotation.rotationIndex(commit: "00000008", count: 7) == 1)
    }

    @Test func withoutACommitTheFirstCaseRuns() {
        #expect(GuestRotation.rotationIndex(commit: nil, count: 7) == 0)
        #expect(GuestRotation.rotationIndex(commit: "not-hex", count: 7) == 0)
        #expect(GuestRotation.rotationIndex(commit: "abc", count: 0) == 0)
    }

    @Test func everyPositionIsReachable() {
        let picked = Set((0..<64).map { GuestRotation.rotationIndex(commit: String(format: "%08x", $0), count: GuestRotation.positions) })
        #expect(picked == Set(0..<GuestRotation.positions))
    }

    /// Twelve positions pair every base scenario with matrix cases, so over twelve commits
    /// every scenario runs, and no position needs two variant guests.
    @Test func twelvePositionsCoverEveryScenarioOnceWithOneVariantGuestEach() {
        let base = GuestRotation.baseGuestScenarios, matrix = GuestRotation.matrix
        var covered = Set<String>()
        for index in 0..<GuestRotation.positions {
            let pair = GuestRotation.scenarios(at: index)
            #expect(pair.count == 2 && pair.filter(matrix.contains).count == 1)
            covered.formUnion(pair)
        }
        #expect(covered == Set(base + matrix))
    }
}
