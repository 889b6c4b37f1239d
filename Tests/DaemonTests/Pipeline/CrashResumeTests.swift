import Foundation
import Testing
import TestSupport
import Journal

/// kill -9 at every named crash point of a one-shot conversion, then run the same command
/// again: the job finishes, its outputs verify, and no stage is recorded complete twice.
@Suite(.serialized, .tags(.slow), .notInQuickRun) struct CrashResumeTests {
    static var pipelinePoints: [String] {
        guard let listed = try? shBlocking([ProductBinary.path, "crash-points"]).out else { return [] }
        // Archive points belong to the daemon; a one-shot conversion never passes them.
        return listed.split(separator: "\n").map(String.init).filter { !$0.contains("archive") }
    }

    @Test func crashPointsAreEnumerableFromTheBinary() throws {
        let points = Self.pipelinePoints
        #expect(points.contains("convert.after-start"))
        #expect(points.contains("publish.outputs-durable"))
        #expect(points.count >= 20)
    }

    @Test(arguments: pipelinePoints)
    func killedAtPointThenResumed(point: String) async throws {
        let scratch = try Scratch("crash")
        let (raw, source) = try await TestDisks.makeSource(in: scratch)
        let out = scratch.path("out")
        let command = [ProductBinary.path, "convert", source, "--output-dir", out, "--no-fix"]

        let crashed = try await sh(command, environment: ["HYPER2KVM_CRASH_POINT": point], allowFailure: true)
        // Stages skipped for a plain disk with --no-fix, use_v2v off and libvirt off never reach their points.
        let stageSkipped = ["extract.", "fix.", "v2v.", "register."].contains { point.hasPrefix($0) }
        if !stageSkipped {
            #expect(crashed.status != 0, "\(point) was never reached")
            #expect(crashed.err.contains("crash point \(point)"))
        }
        let resumed = try await sh(command, allowFailure: true)
        #expect(resumed.status == 0, "resume after \(point) failed: \(resumed.err)")

        let directory = out + "/vm"
        let compare = try await sh(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, directory + "/vm.qcow2"], allowFailure: true)
        #expect(compare.status == 0)
        let sums = try await sh(["sh", "-c", "cd '\(directory)' && sha256sum -c SHA256SUMS"], allowFailure: true)
        #expect(sums.status == 0, "\(sums.out)")
        let published = try FileManager.default.contentsOfDirectory(atPath: out).filter { !$0.hasPrefix(".") }
        #expect(published == ["vm"], "exactly one published directory expected: \(published)")

        let journal = try JobJournal.openForReading(stateDirectory: URL(fileURLWithPath: out + "/.hyper2kvm/state"))
        let jobs = try journal.allJobs()
        #expect(jobs.count == 1 && jobs.first?.state == .published)
        let history = try journal.history(job: jobs.first?.id ?? 0)
        let completions = history.filter { $0.to == .stageCompleted }.compactMap(\.stage)
        #expect(completions.count == Set(completions).count, "a stage was committed twice: \(completions)")
        #expect(history.filter { $0.to == .published }.count == 1)
        let work = try FileManager.default.contentsOfDirectory(atPath: out + "/.hyper2kvm/work")
        #expect(work.isEmpty, "work directory left behind: \(work)")
    }
}

extension CrashResumeTests {
    /// A completed stage's output damaged while the process was down is noticed at resume
    /// (size, then SHA-256), journaled, and its stage rerun; nothing damaged is published.
    @Test(arguments: ["append", "flip"])
    func damagedOutputIsDetectedAndItsStageRerun(damage: String) async throws {
        let scratch = try Scratch("damage")
        let (raw, source) = try await TestDisks.makeSource(in: scratch)
        let out = scratch.path("out")
        let command = [ProductBinary.path, "convert", source, "--output-dir", out, "--no-fix"]
        _ = try await sh(command, environment: ["HYPER2KVM_CRASH_POINT": "emit.after-commit"], allowFailure: true)

        let disk = out + "/.hyper2kvm/work/job-1/disk-disk0.qcow2"
        let handle = try #require(FileHandle(forUpdatingAtPath: disk))
        if damage == "append" {
            handle.seekToEndOfFile()
            handle.write(Data([0x42]))
        } else {
            handle.seek(toFileOffset: 70_000)
            let byte = handle.readData(ofLength: 1).first ?? 0
            handle.seek(toFileOffset: 70_000)
            handle.write(Data([byte ^ 0xFF]))
        }
        try handle.close()

        let resumed = try await sh(command, allowFailure: true)
        #expect(resumed.status == 0, "\(resumed.err)")
        let journal = try JobJournal.openForReading(stateDirectory: URL(fileURLWithPath: out + "/.hyper2kvm/state"))
        let history = try journal.history(job: 1)
        let rerun = history.first { $0.to == .stageStarted && $0.stage == "convert" && ($0.detail ?? "").hasPrefix("rerun:") }
        #expect(rerun != nil, "the damage was not journaled: \(history.map { "\($0.to) \($0.stage ?? "") \($0.detail ?? "")" })")
        let compare = try await sh(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, out + "/vm/vm.qcow2"], allowFailure: true)
        #expect(compare.status == 0)
        let sums = try await sh(["sh", "-c", "cd '\(out)/vm' && sha256sum -c SHA256SUMS"], allowFailure: true)
        #expect(sums.status == 0)
    }
}
