import Foundation
import Testing
import TestSupport

/// Real power loss: the daemon runs inside a Debian guest under qemu (TCG) and the VM is
/// killed with SIGKILL shortly after commits, so whatever the guest had not flushed to its
/// virtual disk is gone; then the guest reboots and the daemon resumes. `scripts/powerloss`
/// drives it (many cuts there, and the negative control). CI runs one cut 1–8 s into the
/// copy of a three-chunk input (the journal then says whether the copy resumed inside the
/// disk), one after every job is published, and the checks after each, which include every
/// published disk compared with its input: two boots, 124–353 s measured
/// on the 2-core build machine at load average 10–25 (most of it booting under TCG).
@Suite(.serialized, .guestWorkSlot, .tags(.boot, .slow), .requiresBootTools) struct PowerLossTests {
    static let cuts = Int(ProcessInfo.processInfo.environment["HYPER2KVM_POWERLOSS_CUTS"] ?? "") ?? 1

    static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/powerloss").path
    }

    /// The hyper2kvm built beside this test bundle (whatever the scratch path), else the
    /// default build's.
    static var binary: String {
        let sibling = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            .deletingLastPathComponent().appendingPathComponent("hyper2kvm").path
        return FileManager.default.isExecutableFile(atPath: sibling) ? sibling : ProductBinary.path
    }

    /// What `scripts/powerloss --json` writes.
    struct Summary: Decodable {
        var cuts: Int
        var boots: Int
        var failedCuts: Int
        var error: String?
        var seconds: Double
        var secondsPerCut: Double
        var runDirectory: String
        var copiesResumedMidDisk: Int?

        enum CodingKeys: String, CodingKey {
            case cuts, boots, error, seconds
            case failedCuts = "failed_cuts", secondsPerCut = "seconds_per_cut", runDirectory = "run_directory"
            case copiesResumedMidDisk = "copies_resumed_mid_disk"
        }
    }

    @Test func noAcknowledgedTransitionOrCommittedArtifactIsLostWhenTheGuestLosesPower() async throws {
        let scratch = try Scratch("powerloss")
        let summaryFile = scratch.path("summary.json")
        let run = try await sh([Self.script, "--cuts", "\(Self.cuts)", "--jobs", "2",
                          "--binary", Self.binary, "--json", summaryFile], allowFailure: true)
        let data = try #require(FileManager.default.contents(atPath: summaryFile), "no summary: \(run.err)")
        let summary = try JSONDecoder().decode(Summary.self, from: data)

        #expect(summary.error == nil, "\(summary.error ?? "") (kept in \(summary.runDirectory))")
        #expect(summary.failedCuts == 0, "\(run.err)")
        // The cuts asked for while jobs ran, plus one after every job was published.
        #expect(summary.cuts == Self.cuts + 1)
        #expect(run.status == 0, "\(run.err)")
        print("power loss: \(summary.cuts) cuts, \(summary.boots) boots, \(summary.failedCuts) failed, "
              + "\(summary.copiesResumedMidDisk ?? 0) copy(ies) resumed inside a disk, "
              + "\(summary.seconds) s (\(summary.secondsPerCut) s per cut)")
    }
}
