import Foundation
import Testing
import TestSupport
import Journal

/// kill -9 at random moments of a conversion, then rerun the same command until it
/// finishes: every trial ends with one intact published VM, no stage committed twice,
/// and at most the interrupted stage redone.
@Suite(.serialized, .tags(.slow), .notInQuickRun) struct RandomKillTests {
    static let trials = Int(ProcessInfo.processInfo.environment["HYPER2KVM_KILL_TRIALS"] ?? "") ?? 50

    @Test func randomKillsNeverLoseDuplicateOrCorruptAnything() async throws {
        let scratch = try Scratch("random-kill")
        let (raw, source) = try await TestDisks.makeSource(in: scratch, options: ["-o", "subformat=streamOptimized"])
        var generator = SystemRandomNumberGenerator()
        var crashes = 0, redone: [Int] = []

        for trial in 0..<Self.trials {
            let out = scratch.path("out-\(trial)")
            let command = [ProductBinary.path, "convert", source, "--output-dir", out, "--no-fix", "--compress"]
            var finished = false
            var attempts = 0
            let stderrPath = scratch.path("stderr-\(trial)")
            while !finished && attempts < 10 {
                attempts += 1
                let process = Process()
                process.executableURL = URL(fileURLWithPath: command[0])
                process.arguments = Array(command.dropFirst())
                process.standardOutput = FileHandle.nullDevice
                _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
                process.standardError = FileHandle(forWritingAtPath: stderrPath)
                try process.run()
                // The first attempts are cut short at a random moment; the last runs to the end.
                if attempts < 3 {
                    try await Task.sleep(for: .seconds(Double.random(in: 0.02...1.2, using: &generator)))
                    if process.isRunning {
                        kill(process.processIdentifier, SIGKILL)
                        crashes += 1
                    }
                }
                process.waitUntilExit()
                finished = process.terminationReason == .exit && process.terminationStatus == 0
            }
            let lastStderr = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
            #expect(finished, "trial \(trial) never finished; the last attempt said: \(lastStderr)")
            guard finished else { break }

            let journal = try JobJournal.openForReading(stateDirectory: URL(fileURLWithPath: out + "/.hyper2kvm/state"))
            let jobs = try journal.allJobs()
            #expect(jobs.count == 1 && jobs.first?.state == .published, "trial \(trial): \(jobs.map(\.state))")
            let history = try journal.history(job: jobs.first?.id ?? 0)
            let completed = history.filter { $0.to == .stageCompleted }.compactMap(\.stage)
            #expect(completed.count == Set(completed).count, "trial \(trial): a stage was committed twice: \(completed)")
            let starts = history.filter { $0.to == .stageStarted }.compactMap(\.stage)
            redone.append(starts.count - Set(starts).count)
            let interruptions = history.filter { $0.to == .interrupted }.count
            #expect(starts.count - Set(starts).count <= interruptions, "trial \(trial): more stages redone than crashes")

            let published = try FileManager.default.contentsOfDirectory(atPath: out).filter { !$0.hasPrefix(".") }
            #expect(published == ["vm"], "trial \(trial): \(published)")
            let sums = try await sh(["sh", "-c", "cd '\(out)/vm' && sha256sum -c --quiet SHA256SUMS"], allowFailure: true)
            #expect(sums.status == 0, "trial \(trial): \(sums.out)")
            if trial % 10 == 0 {
                let compare = try await sh(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, out + "/vm/vm.qcow2"], allowFailure: true)
                #expect(compare.status == 0, "trial \(trial): content differs")
            }
            try? FileManager.default.removeItem(atPath: out)
        }
        let mean = Double(redone.reduce(0, +)) / Double(max(crashes, 1))
        print("random kill -9: \(Self.trials) trials, \(crashes) crashes, stages redone per crash: mean \(String(format: "%.2f", mean)), max in one trial \(redone.max() ?? 0)")
    }
}
