import Foundation
import Testing

/// What a test needs from the host, as Swift Testing conditions: a test whose need is not
/// met is reported as skipped with the reason, instead of failing in its setup.
extension Trait where Self == ConditionTrait {
    /// Runs only as root (mounts, users, chown, libvirtd).
    public static var requiresRoot: Self { requiresRoot() }

    public static func requiresRoot(_ why: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) -> Self {
        .enabled(if: HostCapabilities.isRoot, why ?? "needs root", sourceLocation: sourceLocation)
    }

    /// Starts a libguestfs appliance (guestfish, the guest fixer). Skipped by the quick run:
    /// an appliance takes half a minute to start under TCG.
    public static var requiresLibguestfs: Self {
        .enabled(if: HostCapabilities.libguestfsUsable && !QuickRun.isOn,
                 QuickRun.isOn ? "quick run: starts a libguestfs appliance"
                               : "libguestfs is not usable here (libguestfs0, supermin, qemu-system-x86_64 and a readable /boot/vmlinuz-*)")
    }

    /// Boots a guest under qemu-system (scripts/boot-test). Skipped by the quick run.
    public static var requiresBootTools: Self {
        .enabled(if: HostCapabilities.canBoot && !QuickRun.isOn,
                 QuickRun.isOn ? "quick run: boots a guest" : "qemu-system-x86_64 is missing")
    }

    /// Takes long for another reason (the daemon end to end, large images, waits on
    /// timeouts). Skipped by the quick run.
    public static var notInQuickRun: Self {
        .disabled(if: QuickRun.isOn, "quick run: a slow test")
    }
}

/// The quick run (`scripts/test --quick`, `HYPER2KVM_TEST_QUICK=1`): only the tests that
/// need no appliance, no boot and no long daemon run.
///
/// A condition rather than a tag filter: `swift test` 6.3 filters (`--filter`, `--skip`) by
/// test name only; its tag filtering is not on the command line.
public enum QuickRun {
    public static let isOn = ProcessInfo.processInfo.environment["HYPER2KVM_TEST_QUICK"] == "1"
}

/// Facts about the host the conditions read, each computed once.
public enum HostCapabilities {
    public static let isRoot = geteuid() == 0

    /// qemu-system-x86_64 on PATH's usual places.
    public static let canBoot = ["/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64"]
        .contains { FileManager.default.isExecutableFile(atPath: $0) }

    /// What a libguestfs appliance needs, checked without starting one (that takes half a
    /// minute): the library loads, supermin can build the appliance, qemu exists, and a
    /// host kernel is readable (supermin copies it into the appliance).
    public static let libguestfsUsable: Bool = {
        guard let handle = dlopen("libguestfs.so.0", RTLD_LAZY) else { return false }
        dlclose(handle)
        let kernels = ((try? FileManager.default.contentsOfDirectory(atPath: "/boot")) ?? [])
            .filter { $0.hasPrefix("vmlinuz-") }
        return canBoot
            && FileManager.default.isExecutableFile(atPath: "/usr/bin/supermin")
            && kernels.contains { FileManager.default.isReadableFile(atPath: "/boot/" + $0) }
    }()
}

/// What kind of work a test does, for reports and for choosing what to run.
extension Tag {
    /// Starts a libguestfs appliance.
    @Tag public static var guest: Self
    /// Boots a converted guest under qemu.
    @Tag public static var boot: Self
    /// Long for another reason: the daemon end to end, large images, timeouts.
    @Tag public static var slow: Self
}
