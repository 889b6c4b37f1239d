import Foundation
import Testing
import TestSupport
@testable import Daemon

/// The systemd guide's `KEY=VALUE` configuration files (`Set: MAX_CONCURRENT=1`).
@Suite struct ShellFormConfigurationTests {
    let scratch: Scratch
    var directory: URL { scratch.url }

    init() throws {
        scratch = try Scratch("shellconf")
    }

    func file(_ name: String, _ text: String) throws -> String {
        let url = directory.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    func errors(_ path: String) -> [String] {
        do {
            _ = try ConfigurationLoader.load(files: [path])
            return []
        } catch let error as ConfigurationErrors {
            return error.errors.map(\.description)
        } catch {
            Issue.record("unexpected error \(error)")
            return []
        }
    }

    @Test("upper-case names map to their keys; comments, quotes, export and typed values")
    func assignmentsAreRead() throws {
        let path = try file("hyper2kvm.conf", """
            # /etc/hyper2kvm/hyper2kvm.conf
            WATCH_DIR=/var/lib/hyper2kvm/queue
              OUTPUT_DIR="/srv/converted vms"   # quoted: spaces allowed
            export WORKDIR='/srv/work'
            MAX_CONCURRENT=1
            COMPRESS=true
            FSTAB_MODE=minimal
            VM_NAME="true"
            FILE_STABLE_SECONDS=2.5
            LOG_FILE=/var/log/hyper2kvm/it\\'s.log

            """)
        let c = try ConfigurationLoader.load(files: [path])
        #expect(c.watchDir == "/var/lib/hyper2kvm/queue")
        #expect(c.outputDir == "/srv/converted vms")
        #expect(c.workDir == "/srv/work")
        #expect(c.maxConcurrent == 1 && c.conversion.compress && c.conversion.fstabMode == .minimal)
        #expect(c.conversion.vmName == "true", "a quoted value is a string")
        #expect(c.fileStableSeconds == 2.5)
        #expect(c.logFile == "/var/log/hyper2kvm/it's.log")
        #expect(c.sources == [path])
    }

    @Test("an unknown name is an error naming the file, the line and the nearest name")
    func unknownNameNamesTheLine() throws {
        let path = try file("typo.conf", "# comment\nMAX_CONCURENT=1\nWATCH_DIR=/q\n")
        #expect(errors(path) == ["\(path):2: key 'MAX_CONCURENT': unknown key (did you mean 'MAX_CONCURRENT'?)"])
    }

    @Test("wrong types, active unimplemented keys and mappings are errors with their line")
    func wrongValues() throws {
        let path = try file("bad.conf", "MAX_CONCURRENT=many\nRETRY_POLICY=3\nNO_SUCH=1\nENABLE_RECOVERY=false\n")
        let found = errors(path)
        #expect(found.contains("\(path):1: key 'MAX_CONCURRENT': expected an integer from 1 to 64, got 'many'"), "\(found)")
        #expect(found.contains { $0.hasPrefix("\(path):2: key 'RETRY_POLICY': is a mapping") }, "\(found)")
        #expect(found.contains { $0.hasPrefix("\(path):3: key 'NO_SUCH': unknown key") }, "\(found)")
        #expect(found.contains { $0.hasPrefix("\(path):4: key 'ENABLE_RECOVERY': accepted but not implemented") }, "\(found)")
    }

    @Test("what a shell would expand or run is refused, never read differently", arguments: [
        ("WATCH_DIR=$HOME/queue", "expansion is not supported"),
        ("WATCH_DIR=\"${BASE}/queue\"", "expansion is not supported"),
        ("WATCH_DIR=`pwd`", "expansion is not supported"),
        ("WATCH_DIR=/a /b", "unquoted space"),
        ("WATCH_DIR=\"/never/closed", "unterminated \" quote"),
        ("WATCH_DIR='/never/closed", "unterminated ' quote"),
        ("WATCH_DIR=/q; rm -rf /", "must be quoted"),
        ("WATCH_DIR=/q\\", "line continuation"),
        ("watch_dir=/q", "must be upper case"),
        ("WATCH_DIR /q", "expected NAME=VALUE"),
    ])
    func shellOnlySyntaxIsRefused(line: String, message: String) throws {
        let path = try file("hostile.conf", "MAX_CONCURRENT=1\n" + line + "\n")
        let found = errors(path)
        #expect(found.count == 1 && found.first?.hasPrefix("\(path):2: ") == true && found.first?.contains(message) == true,
                "\(line): \(found)")
    }

    @Test("YAML stays YAML: a mapping file is not taken for KEY=VALUE, and vice versa")
    func formDetection() throws {
        #expect(ShellAssignments.isShellForm("# c\n\nWATCH_DIR=/q\n"))
        #expect(ShellAssignments.isShellForm("export MAX_CONCURRENT=2\n"))
        #expect(!ShellAssignments.isShellForm("command: daemon\nwatch_dir: /q\n"))
        #expect(!ShellAssignments.isShellForm("---\nwatch_dir: /q=x\n"))
        #expect(!ShellAssignments.isShellForm(""))
        let yaml = try file("daemon.conf", "command: daemon\nwatch_dir: /q\n")
        #expect(try ConfigurationLoader.load(files: [yaml]).watchDir == "/q")
        let mixed = try file("mixed.conf", "WATCH_DIR=/q\nmax_concurrent: 2\n")
        #expect(errors(mixed).first?.hasPrefix("\(mixed):2: expected NAME=VALUE") == true, "\(errors(mixed))")
    }

    @Test("a KEY=VALUE file and a YAML file combine; the later wins")
    func laterFileWins() throws {
        let yaml = try file("base.yaml", "command: daemon\nmax_concurrent: 4\ncompress: true\n")
        let conf = try file("override.conf", "MAX_CONCURRENT=1\n")
        let c = try ConfigurationLoader.load(files: [yaml, conf])
        #expect(c.maxConcurrent == 1 && c.conversion.compress && c.command == .daemon)
    }
}
