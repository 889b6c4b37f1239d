import TestSupport
import Foundation
import Testing
@testable import GuestFix
@testable import Stages

/// The test guests built by `scripts/build-test-guest`, cached outside the repository.
enum GuestFixTestGuests {
    static let repositoryRoot = Repository.root

    static var cacheDirectory: URL {
        URL(fileURLWithPath: ProcessInfo.processInfo.environment["HYPER2KVM_TEST_CACHE"] ?? "/var/cache/hyper2kvm-test")
    }

    /// Raw phony Debian (guestfish-made, no libc): sda1 /, sda2 swap, sda3 /srv.
    static func phony() async throws -> URL { try await ensure("phony", file: "phony-debian.img") }

    /// Raw phony Debian with its root on LVM: sda1 ext2 /boot, sda2 the PV of vg0
    /// (vg0/root ext4 /, vg0/swap, vg0/data ext4 /data), and /etc/lvm/devices/system.devices.
    static func phonyLVM() async throws -> URL { try await ensure("phony-lvm", file: "phony-debian-lvm.img") }

    /// Real Debian 12 made like a VMware export, as a streamOptimized VMDK.
    static func debian12() async throws -> URL { try await ensure("debian12", file: "debian12-vmware.vmdk") }

    /// libguestfs needs TCG on the build machines (KVM hangs there); tests set it, the product never does.
    static func configureLibguestfsForTests() { RealGuestTesting.configureLibguestfsForTests() }

    private static func ensure(_ name: String, file: String) async throws -> URL {
        let url = cacheDirectory.appendingPathComponent(file)
        if FileManager.default.fileExists(atPath: url.path) { return url }
        let script = repositoryRoot.appendingPathComponent("scripts/build-test-guest").path
        try await ExternalCommand(script, [name]).runChecked(about: url.path)
        return url
    }
}

/// Reads files of a disk image through guestfish (a separate appliance, read-only), to
/// check what the fixer wrote without going through the code under test.
enum GuestfishReader {
    /// Mounts `root` directly (no inspection, which costs half a minute under TCG).
    static func read(_ image: URL, format: String, root: String = "/dev/sda1", files: [String]) async throws -> [String: String] {
        try await read(image, format: format, mounts: [root], files: files)
    }

    /// Mounts each of `mounts` (guestfish `-m` syntax: `device` or `device:mountpoint`), root first.
    static func read(_ image: URL, format: String, mounts: [String], files: [String]) async throws -> [String: String] {
        var script = ""
        for file in files {
            script += "echo ==== \(file)\n-cat \(file)\n"
        }
        let scratch = try Scratch("guestfish")
        let scriptFile = scratch.file("script.txt")
        try script.write(to: scriptFile, atomically: true, encoding: .utf8)
        let result = try await ExternalCommand("sh", ["-c", "guestfish --ro --format=\(format) -a '\(image.path)' \(mounts.map { "-m \($0)" }.joined(separator: " ")) -f '\(scriptFile.path)'"])
            .runChecked(about: image.path)
        var contents: [String: String] = [:]
        var current: String?
        for line in result.stdoutText.components(separatedBy: "\n") {
            if line.hasPrefix("==== ") {
                current = String(line.dropFirst(5))
                contents[current ?? ""] = ""
            } else if let current {
                contents[current, default: ""] += line + "\n"
            }
        }
        return contents
    }
}

/// A phony guest fixed on a qcow2 overlay, the way the fix stage does it, with what the
/// tests check afterwards: the report, the overlay, and the source's digest before the fix.
struct PhonyGuestFixRun {
    let scratch: Scratch
    let overlay: URL
    let sourceDigest: String
    let report: GuestFixReport

    /// Fixes `source` (raw) with stabilize-all fstab and no initramfs (a phony guest has no
    /// libc, so guest tools cannot run), printing the steps and changes for the test log.
    static func fix(_ source: URL, identifier: String) async throws -> PhonyGuestFixRun {
        GuestFixTestGuests.configureLibguestfsForTests()
        let scratch = try Scratch()
        let overlay = scratch.file("overlay.qcow2")
        let sourceDigest = try FileDigest.sha256(of: source)
        try await GuestFixOverlay.create(over: source, sourceFormat: "raw", at: overlay)
        var options = ConversionOptions()
        options.fstabMode = .stabilizeAll
        options.regenInitramfs = false
        let started = ContinuousClock.now
        let report = try await LinuxGuestFixer(applianceCPUs: 1).fix(disks: [(overlay, "qcow2")], options: options, identifier: identifier)
        print("\(identifier) fix: \(ContinuousClock.now - started); steps: \(report.durations.map { "\($0.step)=\(String(format: "%.1f", $0.seconds))s" })")
        for change in report.changes { print("  change [\(change.area)] \(change.file): \(change.before.prefix(120)) -> \(change.after.prefix(120))") }
        for warning in report.warnings { print("  warning: \(warning)") }
        return PhonyGuestFixRun(scratch: scratch, overlay: overlay, sourceDigest: sourceDigest, report: report)
    }
}
