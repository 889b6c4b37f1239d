import Foundation
import Testing

/// Which real-guest scenarios this run converts and boots. Each costs a conversion under a
/// TCG appliance and one or two TCG boots (4-6 minutes alone on 2 cores), and a full run of
/// them all took over an hour here, so a default run converts two, picked from the commit
/// hash: one scenario of the base test guest and one case of the variant-guest matrix (a
/// variant guest not yet cached costs 10-13 minutes to build, so never two of those). Every
/// commit tries another pair, and the whole set is covered over twelve commits.
///
/// - `HYPER2KVM_TEST_ALL_GUESTS=1` (`scripts/test --all-guests`): every scenario.
/// - `HYPER2KVM_TEST_GUESTS=btrfs,hyperv`: exactly those.
/// - otherwise: index (first 8 hex digits of `git rev-parse HEAD`) mod 12; base scenario
///   index mod 4, matrix case index mod 6; without git or a commit, index 0.
///
/// The OVA through the daemon (RealGuestConversionTests) and the guest fix on the base guest
/// (GuestFixRealGuestTests, with the unfixed guest failing) run every time.
public enum GuestRotation {
    /// Scenarios on the base test guest (scripts/build-test-guest debian12), already cached.
    public static let baseGuestScenarios = ["hyperv", "ovf09", "v2v", "vmx-chain"]

    /// The variant guests' matrix (scripts/build-test-guest.d/variants.sh), in rotation order.
    /// (dracut-xfs is left out while its guest does not build: see RealGuestLayoutTests.)
    public static let matrix = [
        "btrfs", "lvm-uefi",
        "net-ifupdown", "net-networkmanager", "net-netplan", "net-networkd",
    ]

    /// Rotation positions: every pair of a base scenario and a matrix case position (4 × 6 share 12).
    public static let positions = 12

    public static let selected: Set<String> = choose(all: baseGuestScenarios + matrix, rotating: positions, pick: scenarios(at:))

    /// What rotation position `index` runs: one base scenario and one matrix case.
    public static func scenarios(at index: Int) -> Set<String> {
        [baseGuestScenarios[index % baseGuestScenarios.count], matrix[index % matrix.count]]
    }

    /// What a run covers of a rotating set of cases: all of them with
    /// `HYPER2KVM_TEST_ALL_GUESTS=1`, those `HYPER2KVM_TEST_GUESTS` names, or else what
    /// `pick` gives for the commit's rotation index (0..<`rotating`).
    static func choose(all: [String], rotating count: Int, pick: (Int) -> Set<String>) -> Set<String> {
        let environment = ProcessInfo.processInfo.environment
        if environment["HYPER2KVM_TEST_ALL_GUESTS"] == "1" { return Set(all) }
        if let named = environment["HYPER2KVM_TEST_GUESTS"], !named.isEmpty {
            return Set(named.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        }
        return pick(rotationIndex(commit: currentCommit(), count: count))
    }

    /// Whether `name` runs in this test run.
    public static func runs(_ name: String) -> Bool { selected.contains(name) }

    /// The case a commit hash picks: its first 8 hex digits, mod `count`.
    public static func rotationIndex(commit: String?, count: Int) -> Int {
        guard count > 0, let commit, let value = UInt64(commit.prefix(8), radix: 16) else { return 0 }
        return Int(value % UInt64(count))
    }

    static func currentCommit() -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git", "-C", Repository.root.path, "rev-parse", "HEAD"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

extension Trait where Self == ConditionTrait {
    /// Runs when the real-guest rotation (GuestRotation) selects any of `cases` this run.
    public static func inGuestRotation(_ cases: String...) -> Self {
        let note = "real-guest rotation: this run converts \(GuestRotation.selected.sorted().joined(separator: ", ")) "
            + "(HYPER2KVM_TEST_ALL_GUESTS=1 or scripts/test --all-guests boots every case)"
        return .enabled(if: cases.contains { GuestRotation.runs($0) }, Comment(rawValue: note))
    }
}

/// The phony boot-chain guests: one libguestfs appliance each, which takes minutes on a loaded
/// 2-core host (over 500 s each in a full run here). A default run fixes one of the six,
/// picked from the commit hash (layouts and refusals alternate); `scripts/test --all-guests`
/// runs all six, and `HYPER2KVM_TEST_GUESTS=phony-luks,…` names them.
public enum PhonyGuestRotation {
    public static let layouts = ["phony-lvm-bypath", "phony-uefi", "phony-dracut-xfs"]
    public static let refusals = ["phony-missing-initramfs", "phony-luks", "phony-md"]

    /// Rotation order: a layout, then a refusal.
    static let order = zip(layouts, refusals).flatMap { [$0, $1] }

    public static let selected: Set<String> = GuestRotation.choose(all: order, rotating: order.count) { index in
        [order[index]]
    }
}

extension Trait where Self == ConditionTrait {
    /// Runs when PhonyGuestRotation selects `name` this run.
    public static func inPhonyGuestRotation(_ name: String) -> Self {
        let note = "phony boot-chain rotation: this run fixes \(PhonyGuestRotation.selected.sorted().joined(separator: ", ")) "
            + "(scripts/test --all-guests fixes all six)"
        return .enabled(if: PhonyGuestRotation.selected.contains(name), Comment(rawValue: note))
    }
}

/// The distribution phony guests (RHEL 9, RHEL 8, SLES 15, Ubuntu 22.04): one appliance and
/// one virt-diff each. A default run fixes one, picked from the commit hash; `--all-guests`
/// fixes all four.
public enum DistroGuestRotation {
    public static let names = ["rhel9", "rhel8", "sles15", "ubuntu2204"]

    public static let selected: Set<String> = GuestRotation.choose(all: names, rotating: names.count) { index in
        [names[index]]
    }
}

extension Trait where Self == ConditionTrait {
    /// Runs when DistroGuestRotation selects `name` this run.
    public static func inDistroGuestRotation(_ name: String) -> Self {
        let note = "distribution phony rotation: this run fixes \(DistroGuestRotation.selected.sorted().joined(separator: ", ")) "
            + "(scripts/test --all-guests fixes all of them)"
        return .enabled(if: DistroGuestRotation.selected.contains(name), Comment(rawValue: note))
    }
}

/// The Windows refusals and the `win_virtio: false` case on phony disks: one appliance each
/// (a minute alone, over ten when they all started at once on a loaded host). A default run
/// takes two neighbours of the five, picked from the commit hash; `--all-guests` runs all five.
public enum WindowsPhonyRotation {
    public static let names = ["win-wrong-version", "win-bad-hive", "win-bitlocker", "win-hibernated", "win-virtio-off"]

    public static let selected: Set<String> = GuestRotation.choose(all: names, rotating: names.count) { index in
        [names[index], names[(index + 1) % names.count]]
    }
}

extension Trait where Self == ConditionTrait {
    /// Runs when WindowsPhonyRotation selects `name` this run.
    public static func inWindowsPhonyRotation(_ name: String) -> Self {
        let note = "Windows phony rotation: this run fixes \(WindowsPhonyRotation.selected.sorted().joined(separator: ", ")) "
            + "(scripts/test --all-guests runs all five)"
        return .enabled(if: WindowsPhonyRotation.selected.contains(name), Comment(rawValue: note))
    }
}
