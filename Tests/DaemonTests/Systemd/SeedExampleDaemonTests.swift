import Foundation
import Testing
import TestSupport
@testable import Daemon

/// The repository checkout these tests run from (examples/ and systemd/ live there).
private let repository = Repository.root

/// Every daemon configuration of the daemon-mode guide, as shipped in examples/daemon-mode,
/// and the systemd guide's KEY=VALUE examples.
private let daemonModeExamples = ((try? FileManager.default.contentsOfDirectory(
    atPath: repository.appendingPathComponent("examples/daemon-mode").path)) ?? [])
    .filter { $0.hasSuffix(".yaml") }.sorted()
private let systemdExamples = ["hyper2kvm.conf.example", "hyper2kvm-vsphere.conf.example", "hyper2kvm-aws.conf.example"]

/// A daemon started from one example, its `NOTIFY_SOCKET` served by a `NotifyListener`.
private final class NotifiedDaemon {
    let process = Process()
    let listener: NotifyListener
    let log: String

    init(arguments: [String], scratch: Scratch, environment: [String: String], launcher: [String] = []) throws {
        let socket = scratch.path("notify.sock")
        listener = try NotifyListener(socket: socket, messages: scratch.path("notify.log"), timeoutSeconds: 120)
        log = scratch.path("daemon.log")
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.executableURL = URL(fileURLWithPath: launcher.first ?? ProductBinary.path)
        process.arguments = launcher.isEmpty ? arguments : Array(launcher.dropFirst()) + [ProductBinary.path] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment.merging(["NOTIFY_SOCKET": socket]) { _, new in new }) { _, new in new }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    var received: String { listener.received }
    var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// Polls without blocking a test thread: until READY=1 arrives or the daemon exits.
    func waitForReady(seconds: Double) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if received.contains("READY=1") { return true }
            if !process.isRunning { return false }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return received.contains("READY=1")
    }

    /// SIGTERM, then the exit status (nil: still running after `seconds`).
    func stop(seconds: Double = 60) async -> Int32? {
        if process.isRunning { process.terminate() }
        let deadline = ContinuousClock.now + .seconds(seconds)
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(100)) }
        listener.stop()
        return process.isRunning ? nil : process.terminationStatus
    }

    func exited(within seconds: Double) async -> Int32? {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(100)) }
        listener.stop()
        return process.isRunning ? nil : process.terminationStatus
    }
}

@Suite("The documents' configurations start a daemon", .serialized, .tags(.slow), .notInQuickRun)
struct SeedExampleDaemonTests {
    /// The example with every absolute directory it names moved under `root` (the log file's too),
    /// nothing else changed.
    static func relocated(_ text: String, under root: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            for key in ["watch_dir", "output_dir", "workdir", "state_dir", "log_file"] {
                let prefix = key + ": /"
                if line.hasPrefix(prefix) { return key + ": " + root + line.dropFirst(key.count + 2) }
                let shellPrefix = key.uppercased() + "=/"
                if line.hasPrefix(shellPrefix) { return key.uppercased() + "=" + root + line.dropFirst(key.count + 1) }
            }
            return String(line)
        }.joined(separator: "\n")
    }

    @Test("the daemon-mode guide's configurations are all shipped")
    func everyConfigurationIsShipped() {
        #expect(daemonModeExamples == [
            "archive-processed.yaml", "debug.yaml", "high-volume.yaml", "large-vms.yaml", "many-small-vms.yaml", "minimal.yaml",
            "multi-instance-azure.yaml", "multi-instance-hyperv.yaml", "multi-instance-vsphere.yaml", "production.yaml",
            "quick-start.yaml",
        ])
    }

    @Test("each example, directories moved under a temporary directory, reaches READY=1 with WATCH_DIR= in its status",
          .timeLimit(.minutes(5)), arguments: daemonModeExamples.map { "examples/daemon-mode/" + $0 } + systemdExamples.map { "systemd/" + $0 })
    func startsAndReportsReady(example: String) async throws {
        let text = try String(contentsOf: repository.appendingPathComponent(example), encoding: .utf8)
        // `use_v2v: true` (high-volume, large-vms) starts only where virt-v2v is installed,
        // as scripts/install-deps does; GuestConverterCheckTests covers the refusal without it.
        try await startAndStop(example: example, text: text)
    }

    private func startAndStop(example: String, text: String) async throws {
        let scratch = try Scratch("seed-example")
        let root = scratch.path("root")
        let name = URL(fileURLWithPath: example).lastPathComponent.replacingOccurrences(of: ".example", with: "")
        let config = scratch.path(name)
        try Self.relocated(text, under: root).write(toFile: config, atomically: true, encoding: .utf8)
        // Keys the example leaves out default under HYPER2KVM_HOME, as under the units.
        let daemon = try NotifiedDaemon(arguments: ["--config", config], scratch: scratch,
                                        environment: ["HYPER2KVM_HOME": root + "/home"])
        let ready = await daemon.waitForReady(seconds: 120)
        let watchDir = text.split(separator: "\n").first { $0.hasPrefix("watch_dir: ") || $0.hasPrefix("WATCH_DIR=") }
            .map { root + String($0.drop { $0 != "/" }) } ?? root + "/home/queue"
        if ready {
            #expect(daemon.received.contains("STATUS=WATCH_DIR=\(watchDir) · 0 running"), "\(daemon.received)")
            #expect(FileManager.default.fileExists(atPath: watchDir))
        }
        let status = await daemon.stop()
        if !ready {
            Issue.record("\(example): no READY=1; exit \(status.map(String.init) ?? "?"); output:\n\(daemon.output)")
        } else {
            #expect(status == 0, "\(example): stop: \(daemon.output)")
        }
    }

    @Test("a directory the daemon may not write: refused at start with exit 78, naming it and the drop-in",
          .requiresRoot("needs a read-only mount, as ProtectSystem=strict makes one"))
    func unwritableDirectoryIsRefusedWithItsDropIn() async throws {
        let scratch = try Scratch("readonly-dir")
        let readOnly = scratch.path("srv")
        try FileManager.default.createDirectory(atPath: readOnly, withIntermediateDirectories: true)
        try await sh(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", readOnly])
        defer { _ = try? shBlocking(["umount", "-l", readOnly], allowFailure: true) }
        let config = scratch.path("production.yaml")
        try "command: daemon\nwatch_dir: \(readOnly)/queue\nstate_dir: \(scratch.path("state"))\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try NotifiedDaemon(arguments: ["--config", config], scratch: scratch,
                                        environment: ["HYPER2KVM_HOME": scratch.path("home"), "HYPER2KVM_UNIT": "hyper2kvm@production.service"])
        let status = await daemon.exited(within: 60)
        #expect(status == 78, "exit \(String(describing: status)): \(daemon.output)")
        #expect(!daemon.received.contains("READY=1"))
        #expect(daemon.output.contains("watch_dir \(readOnly)/queue: hyper2kvm@production.service may not write there"), "\(daemon.output)")
        #expect(daemon.output.contains("/etc/systemd/system/hyper2kvm@production.service.d/"), "\(daemon.output)")
        #expect(daemon.output.contains("ReadWritePaths=\(readOnly)/queue"), "\(daemon.output)")
        #expect(!FileManager.default.fileExists(atPath: scratch.path("state")), "nothing is created before the refusal")
    }

    @Test("PrivateNetwork=true where the loopback stays down: refused at start with exit 78, naming the loopback",
          .requiresRoot("unshare --net needs root"))
    func unusableLoopbackIsRefused() async throws {
        // A network namespace of its own with lo down: what PrivateNetwork=true gives where
        // systemd cannot bring the loopback up.
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare") else { return }
        let scratch = try Scratch("no-loopback")
        let config = scratch.path("daemon.yaml")
        try "command: daemon\n".write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try NotifiedDaemon(arguments: ["--config", config], scratch: scratch,
                                        environment: ["HYPER2KVM_HOME": scratch.path("home"), "HYPER2KVM_UNIT": "hyper2kvm.service"],
                                        launcher: ["/usr/bin/unshare", "--net", "--"])
        #expect(await daemon.exited(within: 60) == 78, "\(daemon.output)")
        #expect(daemon.output.contains("the loopback interface 127.0.0.1 is not usable here"), "\(daemon.output)")
        #expect(daemon.output.contains("PrivateNetwork=true"), "\(daemon.output)")
        #expect(LoopbackCheck.roundTrip() == nil, "this test process has a working loopback")
    }

    @Test("use_v2v: true on a host without virt-v2v: refused at start with exit 78 and the install hint; one-shot convert too")
    func useV2VWithoutVirtV2VIsRefused() async throws {
        let scratch = try Scratch("no-virt-v2v")
        let config = scratch.path("daemon.yaml")
        try "command: daemon\nuse_v2v: true\n".write(toFile: config, atomically: true, encoding: .utf8)
        // A PATH with the shell tools but not virt-v2v-in-place, nbdkit or qemu-nbd.
        let bin = try scratch.subdirectory("bin")
        for tool in ["sh", "env"] {
            try FileManager.default.createSymbolicLink(atPath: bin.path + "/" + tool, withDestinationPath: "/bin/" + tool)
        }
        let daemon = try NotifiedDaemon(arguments: ["--config", config], scratch: scratch,
                                        environment: ["HYPER2KVM_HOME": scratch.path("home"), "PATH": bin.path])
        #expect(await daemon.exited(within: 60) == 78, "\(daemon.output)")
        #expect(!daemon.received.contains("READY=1"))
        #expect(daemon.output.contains("use_v2v: true needs virt-v2v-in-place, nbdkit, qemu-nbd, not found in PATH"), "\(daemon.output)")
        #expect(daemon.output.contains("apt-get install virt-v2v nbdkit libnbd-bin"), "\(daemon.output)")
        let oneShot = try await sh([ProductBinary.path, "convert", scratch.path("none.vmdk"), "--config", config,
                                    "--output-dir", scratch.path("out")], environment: ["PATH": bin.path], allowFailure: true)
        #expect(oneShot.status != 0 && oneShot.err.contains("use_v2v: true needs virt-v2v-in-place"), "\(oneShot.err)")
        // fix_guest: false needs no guest converter, so nothing is refused for it.
        #expect(GuestConverterCheck.problem(try ConfigurationLoader.load(files: [try scratch.write("copy.yaml", "command: daemon\nuse_v2v: true\nfix_guest: false\n")]),
                                            environment: ["PATH": bin.path]) == nil)
    }

    @Test("daemon --instance: the documents' file names, several files refused with exit 78; instances and status --instance agree")
    func instanceFilesFromTheCommandLine() async throws {
        let scratch = try Scratch("instance-files")
        let etc = scratch.path("etc"), lib = scratch.path("lib")
        try FileManager.default.createDirectory(atPath: etc, withIntermediateDirectories: true)
        try "COMMAND=daemon\nSTATE_DIR=\(scratch.path("vsphere-journal"))\n".write(toFile: etc + "/hyper2kvm-vsphere.conf", atomically: true, encoding: .utf8)
        let environment = ["HYPER2KVM_CONFIG_DIR": etc, "HYPER2KVM_HOME": lib]

        try await sh([ProductBinary.path, "journal", "init", "--instance", "vsphere"], environment: environment)
        let status = try await sh([ProductBinary.path, "status", "--instance", "vsphere", "--json"], environment: environment, allowFailure: true)
        #expect(status.status == 0, "\(status.err)")
        let listing = try await sh([ProductBinary.path, "instances"], environment: environment).out
        #expect(listing.contains("hyper2kvm@vsphere.service") && listing.contains(etc + "/hyper2kvm-vsphere.conf")
                && listing.contains(scratch.path("vsphere-journal")), "\(listing)")

        try "command: daemon\n".write(toFile: etc + "/vsphere.yaml", atomically: true, encoding: .utf8)
        let daemon = try NotifiedDaemon(arguments: ["daemon", "--instance", "vsphere"], scratch: scratch,
                                        environment: environment.merging(["HYPER2KVM_HOME": lib + "/vsphere"]) { _, new in new })
        #expect(await daemon.exited(within: 60) == 78, "\(daemon.output)")
        #expect(daemon.output.contains(etc + "/vsphere.yaml") && daemon.output.contains(etc + "/hyper2kvm-vsphere.conf")
                && daemon.output.contains("never merged"), "\(daemon.output)")
        let both = try await sh([ProductBinary.path, "status", "--instance", "vsphere"], environment: environment, allowFailure: true)
        #expect(both.status != 0 && both.err.contains("2 configuration files"), "\(both.err)")
    }
}
