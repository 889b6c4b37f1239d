import Foundation
import Testing
import TestSupport

/// The repository checkout these tests run from (systemd/ and scripts/ live there).
private let repository = Repository.root

private func repo(_ relative: String) -> String { repository.appendingPathComponent(relative).path }

private let hasSystemdAnalyze = FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze")

/// A system user that exists only for one test; deleted with its group at the end.
private final class ThrowawayUser {
    let name: String
    init() async throws {
        name = "h2kt" + String(UUID().uuidString.lowercased().prefix(8))
        try await sh(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                "--shell", "/usr/sbin/nologin", name])
    }
    var uid: UInt32 { UInt32(((try? shBlocking(["id", "-u", name]).out) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0 }
    deinit {
        _ = try? shBlocking(["userdel", name], allowFailure: true)
        _ = try? shBlocking(["groupdel", name], allowFailure: true)
    }
}

private func owner(_ path: String) throws -> (user: String, mode: Int) {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1
    return ((attributes[.ownerAccountName] as? String) ?? "?", mode)
}

@Suite("systemd units, install, non-root conversion", .serialized, .tags(.slow), .notInQuickRun)
struct SystemdIntegrationTests {
    @Test(arguments: ["hyper2kvm.conf.example", "hyper2kvm-vsphere.conf.example", "hyper2kvm-aws.conf.example"])
    func exampleConfigurationsPassConfigCheck(file: String) async throws {
        let result = try await sh([ProductBinary.path, "config", "check", repo("systemd/" + file)], allowFailure: true)
        #expect(result.status == 0, "\(file): \(result.err)")
        #expect(result.out.contains("command: daemon"))
    }

    @Test(.requiresRoot("scripts/install needs root (creates users, chowns)"),
          .enabled(if: hasSystemdAnalyze, "systemd-analyze is missing (Debian package systemd)"))
    func installedUnitsVerifyCleanAndScoreSafe() async throws {
        let root = try Scratch("units")
        try await sh([repo("scripts/install"), "--binary", ProductBinary.path, "--destdir", root.url.path, "--no-user"])
        // verify resolves dependencies such as sysinit.target inside --root.
        try FileManager.default.createDirectory(atPath: root.path("usr/lib/systemd"), withIntermediateDirectories: true)
        try await sh(["cp", "-a", "/usr/lib/systemd/system", root.path("usr/lib/systemd/")])
        let units = ["hyper2kvm.service", "hyper2kvm@vsphere.service", "hyper2kvm.target"]
        let verify = try await sh(["systemd-analyze", "verify", "--root=" + root.url.path] + units, allowFailure: true)
        #expect(verify.status == 0 && verify.err.isEmpty, "systemd-analyze verify: \(verify.err)")

        for unit in ["hyper2kvm.service", "hyper2kvm@vsphere.service"] {
            let security = try await sh(["systemd-analyze", "security", "--offline=yes", "--root=" + root.url.path, unit], allowFailure: true)
            let line = security.out.split(separator: "\n").first { $0.contains("Overall exposure level") } ?? ""
            let score = line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) }
            print("\(unit): \(line.trimmingCharacters(in: .whitespaces))")
            #expect(score.map { $0 <= 3.0 } == true, "\(unit): \(line) \(security.err)")
        }
    }

    @Test(.requiresRoot("scripts/install needs root (creates users, chowns)"))
    func installCreatesTheTreeAndUninstallKeepsData() async throws {
        let root = try Scratch("install")
        let user = try await ThrowawayUser()
        let dest = root.url.path
        let install = [repo("scripts/install"), "--binary", ProductBinary.path, "--destdir", dest, "--user", user.name]
        try await sh(install)

        let expected: [(String, String, Int)] = [
            ("etc/hyper2kvm", "root", 0o750), ("etc/hyper2kvm/hyper2kvm.conf", "root", 0o640),
            ("var/lib/hyper2kvm", user.name, 0o755), ("var/lib/hyper2kvm/queue", user.name, 0o755),
            ("var/lib/hyper2kvm/output", user.name, 0o755), ("var/lib/hyper2kvm/state", user.name, 0o750),
            ("var/lib/hyper2kvm/work", user.name, 0o750), ("var/log/hyper2kvm", user.name, 0o750),
            ("var/cache/hyper2kvm", user.name, 0o750), ("usr/local/bin/hyper2kvm", "root", 0o755),
            ("usr/local/bin/hyper2kvm-fix-guest", "root", 0o755),
            ("etc/systemd/system/hyper2kvm.service", "root", 0o644), ("etc/systemd/system/hyper2kvm@.service", "root", 0o644),
            ("etc/systemd/system/hyper2kvm.target", "root", 0o644),
            ("usr/local/share/doc/hyper2kvm/systemd/examples/tcg-only.conf", "root", 0o644),
            ("usr/local/share/doc/hyper2kvm/systemd/examples/run-as-root.conf", "root", 0o644),
            ("usr/local/share/doc/hyper2kvm/systemd/examples/private-network.conf", "root", 0o644),
            ("usr/local/share/doc/hyper2kvm/systemd/examples/resources.conf", "root", 0o644),
            ("usr/local/share/doc/hyper2kvm/systemd/hyper2kvm.conf.example", "root", 0o644),
            ("usr/local/share/doc/hyper2kvm/systemd/hyper2kvm-vsphere.conf.example", "root", 0o644),
            ("usr/local/share/doc/hyper2kvm/systemd/hyper2kvm-aws.conf.example", "root", 0o644),
            ("usr/local/share/doc/hyper2kvm/examples/daemon-mode/quick-start.yaml", "root", 0o644),
        ]
        for (path, user, mode) in expected {
            let found = try owner(root.path(path))
            #expect(found.user == user && found.mode == mode, "\(path): \(found.user) \(String(found.mode, radix: 8))")
        }
        let group = try FileManager.default.attributesOfItem(atPath: root.path("etc/hyper2kvm/hyper2kvm.conf"))[.groupOwnerAccountName] as? String
        #expect(group == user.name)
        let unit = try String(contentsOfFile: root.path("etc/systemd/system/hyper2kvm.service"), encoding: .utf8)
        #expect(unit.contains("User=\(user.name)\n") && unit.contains("ExecStart=/usr/local/bin/hyper2kvm daemon --instance hyper2kvm\n"))

        // A second install keeps the operator's configuration and data.
        try "VERBOSE=2\n".write(toFile: root.path("etc/hyper2kvm/hyper2kvm.conf"), atomically: true, encoding: .utf8)
        try "job".write(toFile: root.path("var/lib/hyper2kvm/output/kept"), atomically: true, encoding: .utf8)
        try await sh(install)
        #expect(try String(contentsOfFile: root.path("etc/hyper2kvm/hyper2kvm.conf"), encoding: .utf8) == "VERBOSE=2\n")
        // An operator's hyper2kvm.yaml counts as the default configuration: no second file is added.
        try FileManager.default.moveItem(atPath: root.path("etc/hyper2kvm/hyper2kvm.conf"), toPath: root.path("etc/hyper2kvm/hyper2kvm.yaml"))
        try await sh(install)
        #expect(!FileManager.default.fileExists(atPath: root.path("etc/hyper2kvm/hyper2kvm.conf")))

        try await sh([repo("scripts/uninstall"), "--destdir", dest])
        let fm = FileManager.default
        #expect(!fm.fileExists(atPath: root.path("usr/local/bin/hyper2kvm")))
        #expect(!fm.fileExists(atPath: root.path("usr/local/bin/hyper2kvm-fix-guest")))
        #expect(!fm.fileExists(atPath: root.path("etc/systemd/system/hyper2kvm.service")))
        #expect(fm.fileExists(atPath: root.path("var/lib/hyper2kvm/output/kept")))
        #expect(fm.fileExists(atPath: root.path("etc/hyper2kvm/hyper2kvm.yaml")))

        try await sh([repo("scripts/uninstall"), "--destdir", dest, "--purge"])
        #expect(!fm.fileExists(atPath: root.path("var/lib/hyper2kvm")))
        #expect(!fm.fileExists(atPath: root.path("etc/hyper2kvm")))
    }

    /// The daemon runs the guest fixer from beside its own executable, so an installation
    /// without it would fail every fix stage: install refuses, naming the path it looked at.
    @Test(.requiresRoot("scripts/install needs root"))
    func installRefusesABinaryWithoutTheGuestFixerBesideIt() async throws {
        let root = try Scratch("nofixer")
        let lone = root.path("lone/hyper2kvm")
        try FileManager.default.createDirectory(atPath: root.path("lone"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: lone, withDestinationPath: ProductBinary.path)
        let result = try await sh([repo("scripts/install"), "--binary", lone, "--destdir", root.path("dest"), "--no-user"],
                                  allowFailure: true)
        #expect(result.status != 0)
        #expect(result.err.contains(root.path("lone/hyper2kvm-fix-guest") + ": not an executable file"), "\(result.err)")
        #expect(!FileManager.default.fileExists(atPath: root.path("dest/usr/local/bin/hyper2kvm")))
    }

    @Test(.requiresRoot("creating and switching to an unprivileged user needs root"),
          .timeLimit(.minutes(20)))
    func unprivilegedUserConvertsAndLaunchesLibguestfs() async throws {
        let work = try Scratch("nonroot")
        let user = try await ThrowawayUser()
        // /tmp/h2k-…: the user must traverse the scratch directory and own what it writes.
        try await sh(["chmod", "0755", work.url.path])
        try await TestDisks.makeRaw(at: work.path("disk.raw"))
        try await TestDisks.convert(raw: work.path("disk.raw"), to: work.path("disk.vmdk"), format: "vmdk", options: [])
        // As CacheDirectory= does for the unit: libguestfs ignores a cache directory that is missing.
        try FileManager.default.createDirectory(atPath: work.path("home/cache"), withIntermediateDirectories: true)
        try await sh(["chown", "-R", "\(user.name):\(user.name)", work.path("home"), work.path("disk.vmdk"), work.path("disk.raw")])

        let environment = [
            "LIBGUESTFS_BACKEND": ProcessInfo.processInfo.environment["LIBGUESTFS_BACKEND"] ?? "direct",
            "LIBGUESTFS_BACKEND_SETTINGS": ProcessInfo.processInfo.environment["LIBGUESTFS_BACKEND_SETTINGS"] ?? "force_tcg",
            "LIBGUESTFS_CACHEDIR": work.path("home/cache"), "TMPDIR": work.path("home"), "HOME": work.path("home"),
        ]
        let asUser = ["runuser", "-u", user.name, "--", "env"] + environment.map { "\($0.key)=\($0.value)" }

        let convert = try await sh(asUser + [ProductBinary.path, "convert", work.path("disk.vmdk"), "--output-dir", work.path("home/out"), "--no-fix"],
                             allowFailure: true)
        #expect(convert.status == 0, "convert as \(user.name): \(convert.err)")
        let published = try FileManager.default.contentsOfDirectory(atPath: work.path("home/out")).filter { !$0.hasPrefix(".") }
        #expect(published.count == 1, "published: \(published)")
        let vmDirectory = work.path("home/out/" + (published.first ?? "?"))
        let files = (try? FileManager.default.contentsOfDirectory(atPath: vmDirectory)) ?? []
        #expect(files.contains("domain.xml") && files.contains { $0.hasSuffix(".qcow2") }, "\(files)")
        for file in files {
            let attributes = try FileManager.default.attributesOfItem(atPath: vmDirectory + "/" + file)
            #expect((attributes[.ownerAccountID] as? NSNumber)?.uint32Value == user.uid, "\(file) is not owned by \(user.name)")
        }

        // The fix stage's libguestfs appliance, launched by the same user: supermin builds
        // it into the user's LIBGUESTFS_CACHEDIR from the host kernel and modules.
        let guestfish = try await sh(asUser + ["guestfish", "--ro", "-a", work.path("disk.raw"), "run", ":", "list-filesystems"],
                               allowFailure: true)
        #expect(guestfish.status == 0, "guestfish as \(user.name): \(guestfish.err)")
        #expect(guestfish.out.contains("/dev/sda: ext4"), "\(guestfish.out)")
        let cache = try FileManager.default.subpathsOfDirectory(atPath: work.path("home/cache"))
        #expect(cache.contains { $0.hasSuffix("appliance.d/kernel") }, "no appliance in LIBGUESTFS_CACHEDIR: \(cache.prefix(5))")
    }
}
