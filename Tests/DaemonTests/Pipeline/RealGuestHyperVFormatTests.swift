import Foundation
import Testing
import TestSupport
import Stages

/// The same real Debian 12 as RealGuestConversionTests (root /dev/sda1, ens192 pinned to a
/// VMware MAC, no virtio in its initramfs), saved as the formats Hyper-V exports — dynamic
/// VHDX and VHD — and converted by the one-shot `hyper2kvm convert` with guest fixes on:
/// each output boots to multi-user under QEMU with virtio disk and NIC. The VHD's grub.cfg
/// also lists a kernel that is no longer installed, so one of the two runs update-grub.
///
/// That the unconverted guest does not boot on virtio-blk is shown once, on the VMDK, by
/// StagesTests' GuestFixRealGuestTests: the container format does not change the guest, and
/// the negative costs Debian's full 180 s root-device timeout.
///
/// Both variants share one test so their costs overlap: the first output boots while the
/// second converts (the boot is one TCG vCPU; the fix appliance mostly waits on guest tools).
@Suite(.serialized, .guestWorkSlot, .inGuestRotation("hyperv"), .tags(.guest, .boot), .requiresLibguestfs, .requiresBootTools) struct RealGuestHyperVFormatTests {
    static let repositoryRoot = RealGuestTesting.repositoryRoot
    static var cacheDirectory: String { ProcessInfo.processInfo.environment["HYPER2KVM_TEST_CACHE"] ?? "/var/cache/hyper2kvm-test" }
    static var bootTest: String { repositoryRoot.appendingPathComponent("scripts/boot-test").path }

    static var productBinary: String { ProductBinary.path }

    struct Variant {
        let name: String
        let buildTarget: String
        let file: String
        let qemuFormat: String
        /// The guest's grub.cfg also lists a kernel removed without update-grub (as on VMs
        /// patched for years): the in-place edit cannot stand for that file, so the fix runs
        /// update-grub. Without it, the edit is enough and update-grub is not run.
        let staleGrubEntry: Bool
    }

    static let variants = [
        Variant(name: "hv-vhdx", buildTarget: "debian12-vhdx", file: "debian12-vmware.vhdx", qemuFormat: "vhdx", staleGrubEntry: false),
        Variant(name: "hv-vhd", buildTarget: "debian12-vhd", file: "debian12-vmware.vhd", qemuFormat: "vpc", staleGrubEntry: true),
    ]
    static let staleKernel = "5.10.0-99-amd64"

    /// What one conversion produced and how long it took.
    struct Conversion {
        let variant: Variant
        let disk: String
        let directory: String
        let seconds: Double
        let fixSeconds: Double?
        /// CPU time of the command and its children (the appliance's qemu): what it costs a
        /// busy CI machine, whatever the load was during this run.
        let cpuSeconds: Double
    }

    @Test func vhdxAndVHDOfAVMwareDebianConvertAndBootOnVirtio() async throws {
        let testStart = Date()
        print("RealGuestHyperVFormatTests: converting with \(Self.productBinary)")
        let scratch = try Scratch("real-guest-hyperv")
        let environment = RealGuestTesting.libguestfsEnvironment

        let missing = Self.variants.filter { !FileManager.default.fileExists(atPath: Self.cacheDirectory + "/" + $0.file) }
        if !missing.isEmpty {
            try await sh([Self.repositoryRoot.appendingPathComponent("scripts/build-test-guest").path] + missing.map(\.buildTarget))
        }

        var pendingBoot: (Conversion, BackgroundCommand)?
        var boots: [(Conversion, BackgroundCommand.Result)] = []
        for variant in Self.variants {
            let cached = Self.cacheDirectory + "/" + variant.file
            let source = await variant.staleGrubEntry
                ? try Self.withStaleGrubEntry(cached, format: variant.qemuFormat, scratch: scratch, environment: environment)
                : cached
            let info = try await sh(["qemu-img", "info", "--output=json", source]).out
            #expect(info.contains("\"format\": \"\(variant.qemuFormat)\""), "\(source) is not \(variant.qemuFormat): \(info)")
            let sourceSHA = try await TestDisks.sha256(source)

            let conversion = try await convert(variant, source: source, scratch: scratch, environment: environment)
            #expect(try await TestDisks.sha256(source) == sourceSHA, "\(variant.name): the source was modified")
            try await expectGuestFixesRecorded(conversion)
            try expectGrubHandled(conversion)

            if let (previous, boot) = pendingBoot { boots.append((previous, try await boot.wait())) }
            // A generous timeout: this boot shares the machine with the next conversion, and a
            // guest that cannot find its root is caught by its console message, not the timeout.
            pendingBoot = (conversion, try BackgroundCommand.start([Self.bootTest, conversion.disk, "qcow2"],
                                                                   environment: ["BOOT_TEST_TIMEOUT": "600"],
                                                                   outputDirectory: scratch.path("boot-\(variant.name)")))
        }
        if let (last, boot) = pendingBoot { boots.append((last, try await boot.wait())) }

        for (conversion, boot) in boots {
            print("\(conversion.variant.name): conversion \(String(format: "%.1f", conversion.seconds)) s "
                + "(fix stage \(conversion.fixSeconds.map { String(format: "%.1f", $0) } ?? "?") s, "
                + "CPU \(String(format: "%.1f", conversion.cpuSeconds)) s); boot CPU \(String(format: "%.1f", boot.cpuSeconds)) s: "
                + "\(boot.out)\(boot.err)")
            #expect(boot.status == 0, "\(conversion.variant.name): the converted guest did not boot on virtio: \(boot.out) \(boot.err)")
            #expect(boot.out.contains("HYPER2KVM-NET ens192="), "\(conversion.variant.name): the NIC did not come up under its old name: \(boot.out)")
        }
        print("RealGuestHyperVFormatTests: \(String(format: "%.1f", Date().timeIntervalSince(testStart))) s in all")
    }

    /// A copy of `cached` whose grub.cfg has one more entry, for a kernel that is not installed.
    static func withStaleGrubEntry(_ cached: String, format: String, scratch: Scratch,
                                   environment: [String: String]) async throws -> String {
        let copy = scratch.path("stale-grub-" + URL(fileURLWithPath: cached).lastPathComponent)
        try await sh(["cp", "--sparse=always", cached, copy])
        let entry = scratch.path("stale-entry.cfg")
        try ("menuentry 'Debian GNU/Linux, with Linux \(staleKernel) (removed long ago)' {\n"
            + "\tlinux\t/boot/vmlinuz-\(staleKernel) root=/dev/sda1 ro\n"
            + "\tinitrd\t/boot/initrd.img-\(staleKernel)\n}\n").write(toFile: entry, atomically: true, encoding: .utf8)
        let config = scratch.path("grub.cfg")
        let script = scratch.path("stale-grub.guestfish")
        try "download /boot/grub/grub.cfg \(config)\n! cat \(entry) >> \(config)\nupload \(config) /boot/grub/grub.cfg\n"
            .write(toFile: script, atomically: true, encoding: .utf8)
        try await sh(["guestfish", "--format=\(format)", "-a", copy, "-m", "/dev/sda1", "-f", script], environment: environment)
        return copy
    }

    /// update-grub ran where the edit could not stand for grub.cfg, and only there.
    func expectGrubHandled(_ conversion: Conversion) throws {
        let metadata = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: conversion.directory + "/metadata.json"))) as? [String: Any]
        let fixes = (metadata?["fixes"] as? [[String: Any]]) ?? []
        let skipped = (metadata?["fix_skipped"] as? [[String: Any]]) ?? []
        let regenerated = fixes.first { ($0["after"] as? String)?.hasPrefix("regenerated by update-grub") == true }
        let notRun = skipped.first { $0["area"] as? String == "bootloader" && ($0["reason"] as? String)?.hasPrefix("update-grub not run") == true }
        if conversion.variant.staleGrubEntry {
            let after = regenerated?["after"] as? String ?? ""
            #expect(after.contains(Self.staleKernel) && after.contains("not the installed kernels"),
                    "\(conversion.variant.name): update-grub should have run for the stale entry: \(fixes) \(skipped)")
            #expect(notRun == nil)
        } else {
            #expect(regenerated == nil, "\(conversion.variant.name): update-grub ran though the edit was enough: \(fixes)")
            #expect(notRun != nil, "\(conversion.variant.name): fix_skipped has no bootloader entry: \(skipped)")
        }
        let steps = ((metadata?["fix_steps"] as? [[String: Any]]) ?? []).compactMap { $0["step"] as? String }
        #expect(steps.contains("bootloader") && steps.contains("initramfs"), "fix_steps: \(steps)")
    }

    /// Runs the one-shot command on `source` with guest fixes on (the default).
    func convert(_ variant: Variant, source: String, scratch: Scratch, environment: [String: String]) async throws -> Conversion {
        let out = scratch.path("out-\(variant.name)")
        let start = Date()
        let cpuBefore = ChildCPUTime.seconds()
        // Info-level logging (the default) carries the stage timings; more would flood the pipe.
        let run = try await sh([Self.productBinary, "convert", source, "--output-dir", out, "--vm-name", variant.name],
                         environment: environment, allowFailure: true)
        let seconds = Date().timeIntervalSince(start)
        #expect(run.status == 0, "\(variant.name): convert failed: \(run.err)")
        let directory = out + "/" + variant.name
        let disks = (try? FileManager.default.contentsOfDirectory(atPath: directory))?.filter { $0.hasSuffix(".qcow2") } ?? []
        let disk = try #require(disks.count == 1 ? disks.first : nil, "\(variant.name): expected one qcow2 in \(directory), found \(disks)\n\(run.out)\(run.err)")
        return Conversion(variant: variant, disk: directory + "/" + disk, directory: directory, seconds: seconds,
                          fixSeconds: Self.fixStageSeconds(in: run.out + run.err), cpuSeconds: ChildCPUTime.seconds() - cpuBefore)
    }

    /// The fix stage's duration from the command's log ("fix completed in 93.41 s").
    static func fixStageSeconds(in log: String) -> Double? {
        guard let range = log.range(of: #"fix completed in [0-9.]+ s"#, options: .regularExpression) else { return nil }
        return Double(log[range].dropFirst("fix completed in ".count).dropLast(2))
    }

    func expectGuestFixesRecorded(_ conversion: Conversion) async throws {
        let metadata = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: conversion.directory + "/metadata.json"))) as? [String: Any]
        let fixes = (metadata?["fixes"] as? [[String: Any]]) ?? []
        let areas = Set(fixes.compactMap { $0["area"] as? String })
        #expect(areas.isSuperset(of: ["fstab", "bootloader", "initramfs", "network"]), "\(conversion.variant.name) fixes: \(areas)")
        #expect((metadata?["inspection"] as? [String: Any])?["distro"] as? String == "debian")
        let sums = try await sh(["sh", "-c", "cd '\(conversion.directory)' && sha256sum -c SHA256SUMS"], allowFailure: true)
        #expect(sums.status == 0, "\(conversion.variant.name) SHA256SUMS: \(sums.out) \(sums.err)")
    }
}

/// A host command left running while the test does something else; its output goes to
/// files (a pipe nobody reads would block it).
/// Unchecked: its process is only touched by one waiter at a time.
final class BackgroundCommand: @unchecked Sendable {
    struct Result {
        let status: Int32
        let out: String
        let err: String
        let cpuSeconds: Double
    }

    private let process: Process
    private let outURL: URL
    private let errURL: URL

    private init(process: Process, outURL: URL, errURL: URL) {
        self.process = process
        self.outURL = outURL
        self.errURL = errURL
    }

    static func start(_ arguments: [String], environment: [String: String], outputDirectory: String) throws -> BackgroundCommand {
        try FileManager.default.createDirectory(atPath: outputDirectory, withIntermediateDirectories: true)
        let outURL = URL(fileURLWithPath: outputDirectory + "/stdout"), errURL = URL(fileURLWithPath: outputDirectory + "/stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        try process.run()
        return BackgroundCommand(process: process, outURL: outURL, errURL: errURL)
    }

    /// Waits for the command on a thread of its own (a boot takes minutes: blocking one of
    /// the test process's two pool threads that long stalls other tests' timers).
    func wait() async throws -> Result {
        try await BlockingWork.run("h2k-test-boot") { try self.waitBlocking() }
    }

    /// Its CPU time is known once it is reaped, so nothing else may be reaped concurrently
    /// for `cpuSeconds` to be its own.
    private func waitBlocking() throws -> Result {
        let cpuBefore = ChildCPUTime.seconds()
        process.waitUntilExit()
        return Result(status: process.terminationStatus,
                      out: try String(contentsOf: outURL, encoding: .utf8),
                      err: try String(contentsOf: errURL, encoding: .utf8),
                      cpuSeconds: ChildCPUTime.seconds() - cpuBefore)
    }

    deinit {
        // A test that failed before waiting must not leave a VM running.
        if process.isRunning { process.terminate() }
    }
}

/// User + system CPU time of every reaped child process of the test process (and theirs).
enum ChildCPUTime {
    static func seconds() -> Double {
        var usage = rusage()
        guard getrusage(RUSAGE_CHILDREN.rawValue, &usage) == 0 else { return 0 }
        func value(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return value(usage.ru_utime) + value(usage.ru_stime)
    }
}
