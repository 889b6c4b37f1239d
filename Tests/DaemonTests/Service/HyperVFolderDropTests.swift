import Foundation
import Testing
import TestSupport
import Daemon

/// A Hyper-V export folder copied into the queue the slow way (the folder first, its files
/// later) is one job, taken once the whole tree has settled: the flattened checkpoint is what
/// gets published, and the folder is archived whole.
extension DaemonServiceTests {
    @Test func aHyperVExportFolderCopiedIntoTheQueueIsOneJob() async throws {
        let scratch = try Scratch("daemon-hyperv")
        let base = scratch.path("data")
        let daemon = try RunningDaemon(base: base, config: try writeConfig(scratch))
        defer { _ = daemon.stop() }
        let queue = base + "/queue"
        #expect(await waitUntil(30) { exists(queue) })

        // The export, made beside the queue: a base VHDX and one checkpoint over it.
        let source = scratch.path("export")
        let disks = source + "/Virtual Hard Disks"
        try FileManager.default.createDirectory(atPath: disks, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: source + "/Virtual Machines", withIntermediateDirectories: true)
        try await sh(["dd", "if=/dev/urandom", "of=\(source)/Virtual Machines/1A2B3C4D.vmcx", "bs=4k", "count=1", "status=none"])
        let raw = scratch.path("expected.raw")
        try await sh(["dd", "if=/dev/urandom", "of=\(raw)", "bs=1M", "count=4", "status=none"])
        try await sh(["qemu-img", "convert", "-f", "raw", "-O", "vhdx", raw, disks + "/Web01.vhdx"])
        let write = scratch.path("write.bin")
        try await sh(["dd", "if=/dev/urandom", "of=\(write)", "bs=1M", "count=1", "status=none"])
        try await sh(["python3", Repository.script("make-differencing-vhdx"), "--parent", disks + "/Web01.vhdx",
                      "--out", disks + "/Web01_5E6F.avhdx", "--write", "\(2 << 20):\(write)"])
        try await sh(["dd", "if=\(write)", "of=\(raw)", "bs=1M", "seek=2", "conv=notrunc", "status=none"])

        // The folder arrives empty and settles before its content follows.
        try FileManager.default.createDirectory(atPath: queue + "/Web01", withIntermediateDirectories: false)
        try? await Task.sleep(for: .seconds(2.5))
        #expect(!exists(base + "/output/Web01"))
        for part in ["Virtual Machines", "Virtual Hard Disks"] {
            try await sh(["cp", "-r", source + "/" + part, queue + "/Web01/"])
        }

        #expect(await waitUntil(90) { exists(base + "/output/Web01/Web01.qcow2") && !exists(queue + "/Web01") },
                "not published; log:\n\(daemon.output)")
        let compare = try await sh(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, base + "/output/Web01/Web01.qcow2"],
                                   allowFailure: true)
        #expect(compare.status == 0, "\(compare.out)\(compare.err)")
        let processed = try FileManager.default.subpathsOfDirectory(atPath: queue + "/.processed")
        #expect(processed.contains { $0.hasSuffix("Web01/Virtual Hard Disks/Web01_5E6F.avhdx") }, "\(processed)")
    }
}
