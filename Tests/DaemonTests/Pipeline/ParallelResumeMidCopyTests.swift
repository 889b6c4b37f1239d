import Foundation
import Testing
import TestSupport
import Journal

/// Two disks of an Artifact Manifest copied in parallel (`parallel_processing: true`),
/// qcow2 in 64 MiB chunks (compressed output is copied whole for now), `hyper2kvm convert`
/// killed -9 once both copies are under way: the rerun resumes each disk at its own first
/// chunk not journaled, and both outputs equal their sources. The second disk is a qcow2
/// overlay over a raw base, so its windows are read through a backing file, as the
/// guest-fix overlay's are.
@Suite(.serialized, .notInQuickRun) struct ParallelResumeMidCopyTests {
    @Test func bothDisksOfAParallelCopyResumeAfterAKill() async throws {
        let scratch = try Scratch("parallel-resume-mid-copy")
        let first = scratch.path("a.raw"), base = scratch.path("b.raw"), second = scratch.path("b.qcow2")
        // The first disk is the larger (1 GiB of data): it starts first, and the second starts
        // after its own map and measure, so the first must still be copying by then.
        _ = try await sh(["sh", "-c", "head -c 768M /dev/urandom | base64 -w0 > '\(first)' && "
                          + "head -c 384M /dev/urandom > '\(base)' && truncate -s 768M '\(base)'"])
        _ = try await sh(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "b.raw", "-F", "raw", second])
        _ = try await sh(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 100M 8M", "-c", "write -P 0xa5 600M 8M", second])
        let secondBytes = try FileManager.default.attributesOfItem(atPath: second)[.size] as? Int ?? 0
        let manifest = scratch.path("vm.manifest.json")
        let document: [String: Any] = ["manifest_version": "1.0", "disks": [
            ["id": "disk-0", "source_format": "raw", "bytes": 1_073_741_824, "local_path": first],
            ["id": "disk-1", "source_format": "qcow2", "bytes": secondBytes, "local_path": second]]]
        try JSONSerialization.data(withJSONObject: document).write(to: URL(fileURLWithPath: manifest))
        let config = try scratch.write("config.yaml", "copy_chunk_mib: 64\nparallel_processing: true\n")
        let out = scratch.path("out")
        let command = [ProductBinary.path, "convert", manifest, "--output-dir", out, "--no-fix", "--config", config]

        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Each copy has at least one 64 MiB chunk down.
        let work = out + "/.hyper2kvm/work"
        func allocated() -> [Double] {
            let names = (FileManager.default.enumerator(atPath: work)?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".copying") }
            return names.sorted().map { name in
                var info = stat()
                return stat(work + "/" + name, &info) == 0 ? Double(info.st_blocks) * 512 : 0
            }
        }
        let bothUnderWay = await waitUntil(300) {
            let bytes = allocated()
            return bytes.count == 2 && bytes.allSatisfy { $0 >= 70e6 }
        }
        #expect(bothUnderWay, "copy targets' allocated bytes: \(allocated())")
        kill(process.processIdentifier, SIGKILL)
        _ = await waitUntil(60) { !process.isRunning }

        let rerun = try await sh(command, allowFailure: true)
        #expect(rerun.status == 0, "\(rerun.err.suffix(2000))")
        let journal = try JobJournal.openForReading(stateDirectory: URL(fileURLWithPath: out + "/.hyper2kvm/state"))
        let detail = try journal.history(job: 1).last { $0.to == .stageCompleted && $0.stage == "convert" }?.detail ?? ""
        // Each disk's own note: "disk-disk-N.qcow2: <leak check>; resumed at chunk K of M (…)".
        for disk in ["disk-disk-0.qcow2", "disk-disk-1.qcow2"] {
            let note = detail.components(separatedBy: disk + ": ").dropFirst().first ?? ""
            #expect(note.contains("leaked cluster") && note.contains("resumed at chunk"), "\(disk): \(detail)")
        }
        let vm = out + "/vm.manifest"
        for (source, format, disk) in [(first, "raw", "vm.manifest.qcow2"), (second, "qcow2", "vm.manifest-disk-1.qcow2")] {
            let compare = try await sh(["qemu-img", "compare", "-f", format, "-F", "qcow2", source, vm + "/" + disk], allowFailure: true)
            #expect(compare.status == 0, "\(disk): \(compare.out)")
        }
        let sums = try await sh(["sh", "-c", "cd '\(vm)' && sha256sum -c --quiet SHA256SUMS"], allowFailure: true)
        #expect(sums.status == 0, "\(sums.out)")
    }
}
