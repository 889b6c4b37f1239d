import Foundation
import Testing
import TestSupport

/// The promise to operators, tested as an attacker would break it: files that used to kill
/// the daemon (traps), wedge it (FIFOs, a silent listener) or leak a host file into an output
/// are dropped into the queue together with two good guests. The daemon stays up, the good
/// guests are converted and fixed, every hostile file lands in `.errors/` with a report that
/// names it, and no byte of the planted host file appears in any output, decoded or not.
@Suite(.serialized, .tags(.guest), .requiresLibguestfs) struct HostileDropTests {
    static var phonyGuest: String {
        (ProcessInfo.processInfo.environment["HYPER2KVM_TEST_CACHE"] ?? "/var/cache/hyper2kvm-test") + "/phony-debian.img"
    }

    /// A host file an attacker wants: 256 KiB of a marker, outside the queue.
    struct PlantedSecret {
        let path: String
        let marker: String

        init(at path: String) throws {
            marker = "H2K-HOST-SECRET-\(UUID().uuidString)"
            self.path = path
            let line = marker + "\n"
            try String(repeating: line, count: (256 << 10) / line.utf8.count + 1).write(toFile: path, atomically: true, encoding: .utf8)
        }

        /// Every file below `directory` (qcow2 images decoded to raw first) free of the marker;
        /// with `suffix`, only the files whose names end so (never decode the attacker's own files).
        func expectAbsent(under directory: String, suffix: String? = nil, scratch: Scratch) async throws {
            guard let walker = FileManager.default.enumerator(atPath: directory) else { return }
            let needle = Data(marker.utf8)
            for case let relative as String in walker {
                let path = directory + "/" + relative
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
                      suffix.map(relative.hasSuffix) ?? true else { continue }
                let data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
                #expect(data.range(of: needle) == nil, "the planted host file leaked into \(relative) (raw bytes)")
                if relative.hasSuffix(".qcow2") {
                    let decoded = scratch.path("decoded.raw")
                    try await sh(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", path, decoded])
                    let guest = try Data(contentsOf: URL(fileURLWithPath: decoded), options: .alwaysMapped)
                    #expect(guest.range(of: needle) == nil, "the planted host file leaked into \(relative) (decoded guest data)")
                    try FileManager.default.removeItem(atPath: decoded)
                }
            }
        }
    }

    /// Writes the hostile files into `directory` (outside the queue) and returns their names.
    /// Binary headers are made by python3 from their documented layouts; nothing is committed.
    static func makeHostileFiles(in directory: String, secret: PlantedSecret, silentPort: Int) async throws -> [String] {
        let script = #"""
        import os, struct, sys, tarfile, io, json, subprocess
        d, secret, port = sys.argv[1], sys.argv[2], sys.argv[3]
        def qemu(*args): subprocess.run(["qemu-img", *args], check=True, capture_output=True)
        # Trap: a sparse VMDK whose grain directory offset overflows when turned into bytes.
        h = bytearray(4096)
        struct.pack_into("<4sIIQQQQIQQQ", h, 0, b"KDMV", 1, 3, 2048, 128, 0, 0, 512, 0, 1 << 60, 128)
        h[73:77] = b"\n \r\n"
        open(f"{d}/trap-grain-directory.vmdk", "wb").write(h)
        # Trap: an OVA whose pax record length is Int.max.
        rec = b"9223372036854775807 path=x\n"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
            info = tarfile.TarInfo("PaxHeaders/x"); info.type = tarfile.XHDTYPE; info.size = len(rec)
            t.addfile(info, io.BytesIO(rec))
            info = tarfile.TarInfo("disk.vmdk"); info.size = 512
            t.addfile(info, io.BytesIO(b"\0" * 512))
        open(f"{d}/trap-pax-length.ova", "wb").write(buf.getvalue())
        # Wedge: backing and data file that are FIFOs (beside the image, in the queue).
        os.mkfifo(f"{d}/backing.pipe"); os.mkfifo(f"{d}/data.pipe")
        qemu("create", "-q", "-f", "qcow2", "-u", "-b", "backing.pipe", "-F", "raw", f"{d}/hang-fifo-backing.qcow2", "1M")
        open(f"{d}/harmless.raw", "wb").truncate(1 << 20)
        qemu("create", "-q", "-f", "qcow2", "-o", f"data_file={d}/harmless.raw,data_file_raw=on", f"{d}/hang-fifo-data.qcow2", "1M")
        qemu("amend", "-f", "qcow2", "-o", "data_file=data.pipe", f"{d}/hang-fifo-data.qcow2")
        # Wedge: a backing name qemu reads as a protocol, with an empty decoy of that name beside it.
        nbd = f"nbd:127.0.0.1:{port}"
        qemu("create", "-q", "-f", "qcow2", "-u", "-b", nbd, "-F", "raw", f"{d}/hang-nbd-backing.qcow2", "1M")
        open(f"{d}/{nbd}", "wb").close()
        # Leak: an external data file naming the host file (absolute).
        qemu("create", "-q", "-f", "qcow2", "-o", f"data_file={d}/harmless.raw,data_file_raw=on", f"{d}/leak-data-file.qcow2", "1M")
        qemu("amend", "-f", "qcow2", "-o", f"data_file={secret}", f"{d}/leak-data-file.qcow2")
        os.unlink(f"{d}/harmless.raw")
        # Leak: a VMDK descriptor whose extent line is split across a newline.
        open(f"{d}/leak-split-extent.vmdk", "w").write(
            '# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType="monolithicFlat"\n'
            f'RW 512 FLAT\n"{secret}" 0\n')
        # Leak: a manifest naming the host file.
        json.dump({"manifest_version": "1.0", "disks": [{"id": "d0", "source_format": "raw", "bytes": 0, "local_path": secret}]},
                  open(f"{d}/leak-manifest.json", "w"))
        print("\n".join(["trap-grain-directory.vmdk", "trap-pax-length.ova", "hang-fifo-backing.qcow2", "hang-fifo-data.qcow2",
                         "hang-nbd-backing.qcow2", "leak-data-file.qcow2", "leak-split-extent.vmdk", "leak-manifest.json"]))
        """#
        let result = try await sh(["python3", "-c", script, directory, secret.path, String(silentPort)])
        return result.out.split(separator: "\n").map(String.init)
    }

    /// A TCP listener on loopback that never accepts and never answers: what qemu would hang on.
    final class SilentListener {
        let socket: Int32
        let port: Int

        init() throws {
            let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = 0
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0, listen(fd, 8) == 0 else { throw FixtureError("cannot listen on loopback") }
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            socket = fd
            port = Int(UInt16(bigEndian: address.sin_port))
        }

        deinit { close(socket) }
    }

    @Test func trappingHangingAndLeakingFilesBesideTwoGoodGuestsCostOnlyTheirOwnJobs() async throws {
        if !FileManager.default.fileExists(atPath: Self.phonyGuest) {
            try await sh([RealGuestTesting.repositoryRoot.appendingPathComponent("scripts/build-test-guest").path, "phony"])
        }
        let scratch = try Scratch("hostile-drop")
        let base = scratch.path("data")
        let queue = base + "/queue"
        let staging = scratch.path("staging")
        try FileManager.default.createDirectory(atPath: queue, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        let secret = try PlantedSecret(at: scratch.path("host-secret.txt"))
        let listener = try SilentListener()

        let hostile = try await Self.makeHostileFiles(in: staging, secret: secret, silentPort: listener.port)
        try await sh(["cp", "--sparse=always", Self.phonyGuest, staging + "/good-raw.img"])
        try await sh(["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", Self.phonyGuest, staging + "/good-vmdk.vmdk"])

        let config = scratch.path("daemon.yaml")
        // The phony guests are made by guestfish alone and carry no initramfs generator, so
        // the fix leaves the initramfs alone; fstab, bootloader and network are still fixed.
        try "command: daemon\nfile_stable_seconds: 1\nmax_concurrent: 2\nregen_initramfs: false\nretry_policy: {enabled: false}\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try DaemonServiceTests.RunningDaemon(base: base, config: config, environment: RealGuestTesting.libguestfsEnvironment)
        defer { _ = daemon.stop() }
        #expect(await waitFor(20) { FileManager.default.fileExists(atPath: queue) })

        // Everything at once: the helpers (FIFOs, decoy) first, so no image waits on a missing sibling.
        let helpers = ["backing.pipe", "data.pipe", "nbd:127.0.0.1:\(listener.port)"]
        for name in helpers + hostile + ["good-raw.img", "good-vmdk.vmdk"] {
            try FileManager.default.moveItem(atPath: staging + "/" + name, toPath: queue + "/" + name)
        }

        let finished = await waitFor(1500) {
            let good = ["good-raw", "good-vmdk"].allSatisfy { FileManager.default.fileExists(atPath: base + "/output/\($0)/SHA256SUMS") }
            let goodFailed = ["good-raw.img", "good-vmdk.vmdk"].contains { FileManager.default.fileExists(atPath: queue + "/.errors/\($0).error.json") }
            let refused = hostile.allSatisfy { FileManager.default.fileExists(atPath: queue + "/.errors/\($0).error.json") }
            return (good && refused) || goodFailed || !daemon.process.isRunning
        }
        #expect(daemon.process.isRunning, "the daemon died:\n\(daemon.output.suffix(4000))")
        #expect(finished, "not every file was handled in time:\n\(daemon.output.suffix(4000))")

        for vm in ["good-raw", "good-vmdk"] {
            #expect(FileManager.default.fileExists(atPath: base + "/output/\(vm)/\(vm).qcow2"), "\(vm) was not published")
            let metadata = try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: base + "/output/\(vm)/metadata.json")))
            #expect(((metadata as? [String: Any])?["fixes"] as? [Any])?.isEmpty == false, "\(vm) was not fixed")
        }
        for name in hostile {
            let reportPath = queue + "/.errors/\(name).error.json"
            let report = (try? String(contentsOfFile: reportPath, encoding: .utf8)) ?? ""
            #expect(!report.isEmpty, "\(name) has no error report")
            #expect(report.contains(name), "\(name)'s report does not name it: \(report)")
            #expect(FileManager.default.fileExists(atPath: queue + "/.errors/" + name), "\(name) was not moved to .errors/")
            #expect(!FileManager.default.fileExists(atPath: base + "/output/" + URL(fileURLWithPath: name).deletingPathExtension().lastPathComponent),
                    "\(name) was published")
        }
        try await secret.expectAbsent(under: base + "/output", scratch: scratch)
        try await secret.expectAbsent(under: queue + "/.errors", suffix: ".error.json", scratch: scratch)
        let log = Data(daemon.output.utf8)
        #expect(log.range(of: Data(secret.marker.utf8)) == nil, "the planted host file's content reached the log")
        withExtendedLifetime(listener) {}
    }

    /// Polls (in the test only) until `condition` holds or `seconds` pass.
    func waitFor(_ seconds: Double, _ condition: () throws -> Bool) async rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            try? await Task.sleep(for: .seconds(1))
        }
        return try condition()
    }
}
