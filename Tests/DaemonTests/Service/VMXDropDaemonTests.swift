import Foundation
import Testing
import TestSupport

/// A VMware datastore folder dropped into a running daemon: a `.vmx`, its `.nvram`, a disk that
/// is a snapshot chain (a base descriptor + flat extent, a sparse delta) and a second
/// disk, all one job; a snapshot tree beside it is refused as a whole.
@Suite(.serialized, .tags(.slow), .notInQuickRun) struct VMXDropDaemonTests {
    static let mac = "00:50:56:aa:bb:01"

    static func vmx() -> String {
        """
        .encoding = "UTF-8"
        config.version = "8"
        virtualHW.version = "19"
        displayName = "web01"
        memSize = "768"
        numvcpus = "2"
        firmware = "efi"
        nvram = "web01.nvram"
        scsi0.present = "TRUE"
        scsi0.virtualDev = "pvscsi"
        scsi0:1.present = "TRUE"
        scsi0:1.fileName = "data.vmdk"
        scsi0:0.present = "TRUE"
        scsi0:0.deviceType = "scsi-hardDisk"
        scsi0:0.fileName = "web-000001.vmdk"
        ethernet0.present = "TRUE"
        ethernet0.virtualDev = "vmxnet3"
        ethernet0.networkName = "VM Network"
        ethernet0.addressType = "static"
        ethernet0.address = "\(mac)"
        guestOS = "debian12-64"

        """
    }

    func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    @Test func aVMXFolderWithASnapshotChainIsOneJobAndASnapshotTreeIsRefused() async throws {
        let scratch = try Scratch("daemon-vmx")
        let stage = try scratch.subdirectory("stage")
        func qemu(_ arguments: [String]) async throws { try await sh(arguments, in: stage) }
        try await qemu(["qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", "web.vmdk", "16M"])
        try await qemu(["qemu-io", "-f", "vmdk", "-c", "write -P 0x11 0 64k", "web.vmdk"])
        try await qemu(["qemu-img", "create", "-q", "-f", "vmdk", "-b", "web.vmdk", "-F", "vmdk", "web-000001.vmdk"])
        try await qemu(["qemu-io", "-f", "vmdk", "-c", "write -P 0x22 1m 64k", "web-000001.vmdk"])
        try await qemu(["qemu-img", "create", "-q", "-f", "vmdk", "data.vmdk", "8M"])
        try await qemu(["qemu-io", "-f", "vmdk", "-c", "write -P 0x33 0 64k", "data.vmdk"])
        try Self.vmx().write(to: stage.appendingPathComponent("web01.vmx"), atomically: true, encoding: .utf8)
        try Data(count: 8192).write(to: stage.appendingPathComponent("web01.nvram"))
        // The tree: two deltas of one base, each the newest state of a different VM.
        try await qemu(["qemu-img", "create", "-q", "-f", "vmdk", "t.vmdk", "8M"])
        try await qemu(["qemu-img", "create", "-q", "-f", "vmdk", "-b", "t.vmdk", "-F", "vmdk", "t-000001.vmdk"])
        try await qemu(["qemu-img", "create", "-q", "-f", "vmdk", "-b", "t.vmdk", "-F", "vmdk", "u-000001.vmdk"])

        let config = scratch.path("daemon.yaml")
        try "command: daemon\nfile_stable_seconds: 1\nfix_guest: false\nverbose: 2\nretry_policy: {enabled: false}\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        let base = scratch.path("data")
        let daemon = try DaemonServiceTests.RunningDaemon(base: base, config: config)
        defer { _ = daemon.stop() }
        let queue = base + "/queue"
        #expect(await waitUntil(30) { exists(queue) })
        // The .vmx and the newest delta first, as a copy tool would deliver them; the parents last.
        for name in ["web01.vmx", "web-000001.vmdk", "u-000001.vmdk", "t-000001.vmdk", "data.vmdk", "web01.nvram"] {
            try FileManager.default.moveItem(atPath: stage.appendingPathComponent(name).path, toPath: queue + "/" + name)
        }
        try await Task.sleep(for: .seconds(2))
        for name in ["web.vmdk", "web-flat.vmdk", "t.vmdk"] {
            try FileManager.default.moveItem(atPath: stage.appendingPathComponent(name).path, toPath: queue + "/" + name)
        }

        let vm = base + "/output/web01"
        #expect(await waitUntil(120) { exists(vm + "/web01.qcow2") && exists(vm + "/domain.xml") }, "not published; log:\n\(daemon.output)")
        let xml = (try? String(contentsOfFile: vm + "/domain.xml", encoding: .utf8)) ?? ""
        #expect(xml.contains(Self.mac), "\(xml)")
        #expect(xml.contains("<memory unit='MiB'>768</memory>"), "\(xml)")
        #expect(xml.contains("<vcpu placement='static'>2</vcpu>"), "\(xml)")
        #expect(xml.contains("OVMF"), "firmware = efi must give a UEFI domain: \(xml)")
        for (offset, pattern) in [("0", 0x11), ("1m", 0x22)] {
            let read = try await sh(["qemu-io", "-f", "qcow2", "-c", "read -P \(pattern) \(offset) 64k", vm + "/web01.qcow2"], allowFailure: true)
            #expect(!read.out.contains("verification failed") && read.status == 0, "newest state at \(offset): \(read.out)")
        }
        let second = try FileManager.default.contentsOfDirectory(atPath: vm).filter { $0.hasSuffix(".qcow2") && $0 != "web01.qcow2" }
        #expect(second.count == 1, "\(second)")

        #expect(await waitUntil(30) { exists(queue + "/.errors/t-000001.vmdk.error.json") }, "log:\n\(daemon.output)")
        let report = (try? String(contentsOfFile: queue + "/.errors/t-000001.vmdk.error.json", encoding: .utf8)) ?? ""
        #expect(report.contains("t.vmdk is the parent of both t-000001.vmdk and u-000001.vmdk"), "\(report)")
        #expect(await waitUntil(30) {
            ["t.vmdk", "u-000001.vmdk"].allSatisfy { exists(queue + "/.errors/" + $0) }
                && ["web01.vmx", "web.vmdk", "web-flat.vmdk", "web-000001.vmdk", "data.vmdk", "web01.nvram", "t.vmdk"].allSatisfy { !exists(queue + "/" + $0) }
        }, "log:\n\(daemon.output)")
        let processed = try FileManager.default.subpathsOfDirectory(atPath: queue + "/.processed")
        for name in ["web01.vmx", "web.vmdk", "web-flat.vmdk", "web-000001.vmdk", "data.vmdk", "web01.nvram"] {
            #expect(processed.contains { $0.hasSuffix("/" + name) }, "\(name) not archived with its job: \(processed)")
        }
        let history = try await sh([ProductBinary.path, "history", "1", "--state-dir", base + "/state"], allowFailure: true)
        #expect(history.out.contains("configuration web01.vmx: VMware .vmx, 2 disk(s) in order scsi0:0 web-000001.vmdk, scsi0:1 data.vmdk"),
                "\(history.out)")
        #expect(history.out.contains("a snapshot of web.vmdk (flattened to its newest state)"), "\(history.out)")
        #expect(daemon.stop() == 0, "log:\n\(daemon.output)")
    }
}
