import Daemon
import Foundation
import Testing
import TestSupport

@Suite("Daemon instances: names, state directories, lock probe")
struct InstanceLayoutTests {
    @Test func defaultAndNamedInstancesFollowTheUnits() throws {
        let layout = InstanceLayout(configDirectory: "/etc/hyper2kvm", dataDirectory: "/var/lib/hyper2kvm")
        let standard = try layout.instance(named: nil)
        #expect(standard.configCandidates == ["/etc/hyper2kvm/hyper2kvm.conf", "/etc/hyper2kvm/hyper2kvm.yaml"])
        #expect(standard.home == "/var/lib/hyper2kvm")
        #expect(standard.unitName == "hyper2kvm.service")
        #expect(try layout.instance(named: "hyper2kvm") == standard)

        let vsphere = try layout.instance(named: "vsphere")
        #expect(vsphere.configCandidates == ["/etc/hyper2kvm/vsphere.yaml", "/etc/hyper2kvm/hyper2kvm-vsphere.conf",
                                             "/etc/hyper2kvm/vsphere.conf"])
        #expect(vsphere.home == "/var/lib/hyper2kvm/vsphere")
        #expect(vsphere.unitName == "hyper2kvm@vsphere.service")
    }

    @Test(arguments: ["", "../etc", "a/b", ".hidden", "-x", "with space"])
    func pathLikeNamesAreRefused(name: String) {
        #expect(throws: InstanceError.self) { try InstanceLayout().instance(named: name) }
    }

    @Test func stateDirectoryComesFromTheConfigurationElseTheHome() throws {
        let scratch = try Scratch("instances")
        let layout = InstanceLayout(configDirectory: scratch.path("etc"), dataDirectory: scratch.path("lib"))
        try FileManager.default.createDirectory(atPath: layout.configDirectory, withIntermediateDirectories: true)
        try "command: daemon\nstate_dir: \(scratch.path("elsewhere"))\n".write(toFile: scratch.path("etc/vsphere.yaml"), atomically: true, encoding: .utf8)
        try "command: daemon\n".write(toFile: scratch.path("etc/aws.yaml"), atomically: true, encoding: .utf8)
        try "command: daemon\n".write(toFile: scratch.path("etc/hyper2kvm.yaml"), atomically: true, encoding: .utf8)
        try "".write(toFile: scratch.path("etc/notes.yaml.example"), atomically: true, encoding: .utf8)

        #expect(try layout.instance(named: "vsphere").stateDirectory() == scratch.path("elsewhere"))
        #expect(try layout.instance(named: "aws").stateDirectory() == scratch.path("lib/aws/state"))
        #expect(try layout.instance(named: "nothing").stateDirectory() == scratch.path("lib/nothing/state"))
        #expect(try layout.instance().stateDirectory() == scratch.path("lib/state"))
        #expect(try layout.configuredInstances().map(\.name) == ["hyper2kvm", "aws", "vsphere"])
    }

    @Test("every file name of the documents configures its instance; instances lists them by that name")
    func configurationFileNamesOfTheDocuments() throws {
        let scratch = try Scratch("instance-names")
        let etc = scratch.path("etc")
        let layout = InstanceLayout(configDirectory: etc, dataDirectory: scratch.path("lib"))
        try FileManager.default.createDirectory(atPath: etc, withIntermediateDirectories: true)
        for (file, text) in [("hyper2kvm.conf", "MAX_CONCURRENT=1\n"), ("hyper2kvm-vsphere.conf", "MAX_CONCURRENT=2\n"),
                             ("aws.conf", "MAX_CONCURRENT=3\n"), ("production.yaml", "max_concurrent: 4\n"),
                             ("hyper2kvm-vsphere.conf.example", ""), (".hidden.yaml", ""), ("README", "")] {
            try text.write(toFile: etc + "/" + file, atomically: true, encoding: .utf8)
        }
        #expect(try layout.configuredInstances().map(\.name) == ["hyper2kvm", "aws", "production", "vsphere"])
        #expect(try layout.instance().configFile() == etc + "/hyper2kvm.conf")
        #expect(try layout.instance().configuration().maxConcurrent == 1)
        #expect(try layout.instance(named: "vsphere").configuration().maxConcurrent == 2)
        #expect(try layout.instance(named: "aws").configuration().maxConcurrent == 3)
        #expect(try layout.instance(named: "production").configuration().maxConcurrent == 4)
        #expect(try layout.instance(named: "production").configuration().watchDir == scratch.path("lib/production/queue"))
    }

    @Test("two configuration files for one instance: refused, both named, nothing merged")
    func severalConfigurationFilesAreRefused() throws {
        let scratch = try Scratch("instance-conflict")
        let etc = scratch.path("etc")
        let layout = InstanceLayout(configDirectory: etc, dataDirectory: scratch.path("lib"))
        try FileManager.default.createDirectory(atPath: etc, withIntermediateDirectories: true)
        for file in ["hyper2kvm.conf", "hyper2kvm.yaml", "vsphere.yaml", "hyper2kvm-vsphere.conf", "vsphere.conf"] {
            try "command: daemon\n".write(toFile: etc + "/" + file, atomically: true, encoding: .utf8)
        }
        for (name, files) in [("hyper2kvm", ["hyper2kvm.conf", "hyper2kvm.yaml"]),
                              ("vsphere", ["vsphere.yaml", "hyper2kvm-vsphere.conf", "vsphere.conf"])] {
            let error = #expect(throws: InstanceError.self) { try layout.instance(named: name).configuration() }
            for file in files {
                #expect(error?.description.contains(etc + "/" + file) == true, "\(String(describing: error))")
            }
            let row = InstanceSummary.survey(try layout.instance(named: name))
            #expect(row.state == "unknown" && row.problem?.contains("configuration files") == true, "\(row)")
        }
    }

    @Test("a named instance without a file is refused; the default one runs on defaults")
    func missingConfiguration() throws {
        let scratch = try Scratch("instance-missing")
        let layout = InstanceLayout(configDirectory: scratch.path("etc"), dataDirectory: scratch.path("lib"))
        #expect(try layout.instance().configuration().watchDir == scratch.path("lib/queue"))
        let error = #expect(throws: InstanceError.self) { try layout.instance(named: "typo").configuration() }
        #expect(error?.description.contains("hyper2kvm-typo.conf") == true)
    }

    @Test func lockTableMatchesFlockEntriesByInode() {
        let table = """
        1: POSIX  ADVISORY  READ 10821 fe:00:6775057 128 128
        2: FLOCK  ADVISORY  WRITE 4242 00:2f:991 0 EOF
        2: -> FLOCK  ADVISORY  WRITE 4343 00:2f:555 0 EOF
        """
        #expect(JournalLockProbe.isFlockHeld(inode: 991, table: table))
        #expect(!JournalLockProbe.isFlockHeld(inode: 6775057, table: table))
        #expect(!JournalLockProbe.isFlockHeld(inode: 555, table: table))
    }
}

@Suite("hyper2kvm status --instance and instances", .serialized)
struct InstanceCommandTests {
    @Test func statusFindsTheInstanceJournalAndInstancesSeesTheRunningDaemon() async throws {
        let scratch = try Scratch("instance-cli")
        let etc = scratch.path("etc"), lib = scratch.path("lib")
        try FileManager.default.createDirectory(atPath: etc, withIntermediateDirectories: true)
        try "command: daemon\nstate_dir: \(scratch.path("vsphere-journal"))\n".write(toFile: etc + "/vsphere.yaml", atomically: true, encoding: .utf8)
        try "command: daemon\nfile_stable_seconds: 0\nshutdown_grace_seconds: 5\n".write(toFile: etc + "/aws.yaml", atomically: true, encoding: .utf8)
        let environment = ["HYPER2KVM_CONFIG_DIR": etc, "HYPER2KVM_HOME": lib]

        // A job in the vsphere instance's journal (its state_dir comes from its config).
        try await TestDisks.makeRaw(at: scratch.path("disk.raw"))
        try await sh([ProductBinary.path, "convert", scratch.path("disk.raw"), "--output-dir", scratch.path("out"),
                "--state-dir", scratch.path("vsphere-journal"), "--no-fix", "--no-checksum"])
        let status = try await sh([ProductBinary.path, "status", "--instance", "vsphere", "--json"], environment: environment)
        #expect(status.out.contains("disk.raw"), "status --instance vsphere: \(status.out)")

        // The aws instance's daemon, started as its unit would: HYPER2KVM_HOME=<lib>/aws.
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: ProductBinary.path)
        daemon.arguments = ["--config", etc + "/aws.yaml"]
        daemon.environment = ProcessInfo.processInfo.environment.merging(["HYPER2KVM_HOME": lib + "/aws"]) { _, new in new }
        let daemonLog = scratch.path("aws-daemon.log")
        _ = FileManager.default.createFile(atPath: daemonLog, contents: nil)
        daemon.standardError = FileHandle(forWritingAtPath: daemonLog)
        daemon.standardOutput = FileHandle.nullDevice
        try daemon.run()
        // What to look at when an expectation below fails: did the daemon die, and what did it say?
        func daemonReport() -> String {
            let state = daemon.isRunning ? "running" : "exited (\(daemon.terminationReason == .exit ? "status" : "signal") \(daemon.terminationStatus))"
            return "daemon \(state); its log:\n" + ((try? String(contentsOfFile: daemonLog, encoding: .utf8)) ?? "")
        }
        defer { if daemon.isRunning { daemon.terminate() } }
        let lock = lib + "/aws/state/journal.lock"
        var pidText = ""
        for _ in 0..<100 where pidText.isEmpty {
            try await Task.sleep(for: .milliseconds(100))
            pidText = ((try? String(contentsOfFile: lock, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(pidText == "\(daemon.processIdentifier)")

        let listing = try await sh([ProductBinary.path, "instances", "--json"], environment: environment)
        let rows = try JSONDecoder().decode([Row].self, from: Data(listing.out.utf8))
        #expect(rows.map(\.name) == ["aws", "vsphere"])
        #expect(rows.first { $0.name == "aws" } == Row(name: "aws", unit: "hyper2kvm@aws.service", state_dir: lib + "/aws/state",
                                                      state: "running", pid: daemon.processIdentifier),
                "\(daemonReport())\n/proc/locks:\n\((try? String(contentsOfFile: "/proc/locks", encoding: .utf8)) ?? "")")
        #expect(rows.first { $0.name == "vsphere" }?.state == "stopped")
        #expect(rows.first { $0.name == "vsphere" }?.state_dir == scratch.path("vsphere-journal"))
        let table = try await sh([ProductBinary.path, "instances"], environment: environment).out
        #expect(table.contains("hyper2kvm@aws.service") && table.contains("running (pid \(daemon.processIdentifier))"),
                "\(table)\n\(daemonReport())")

        daemon.terminate()
        daemon.waitUntilExit()
        let after = try await sh([ProductBinary.path, "instances", "--json"], environment: environment)
        #expect(try JSONDecoder().decode([Row].self, from: Data(after.out.utf8)).allSatisfy { $0.state == "stopped" })

        let bad = try await sh([ProductBinary.path, "status", "--instance", "../x"], environment: environment, allowFailure: true)
        #expect(bad.status != 0 && bad.err.contains("not an instance name"))
    }

    struct Row: Decodable, Equatable {
        let name: String
        let unit: String
        let state_dir: String?
        let state: String
        let pid: Int32?
    }
}
