import Foundation
import Testing

/// The guests `hyper2kvm inspect` is run on (PreflightInspectTests): one libguestfs appliance
/// each, minutes on the loaded 2-core host, so a default run inspects one, picked from the
/// commit hash like the boot matrix (`GuestRotation.choose`); `HYPER2KVM_TEST_ALL_GUESTS=1`
/// inspects all, `HYPER2KVM_TEST_GUESTS=inspect-blank,…` names them.
public enum PreflightRotation {
    public static let cases = [
        "inspect-debian12-vmware", "inspect-phony-luks", "inspect-phony-md", "inspect-phony-missing-initramfs",
        "inspect-blank", "inspect-win10-sata", "inspect-win10-virtio", "inspect-win10-hibernated", "inspect-bitlocker",
        "inspect-debian12-lvm-uefi", "inspect-debian12-btrfs",
    ]

    public static let selected: Set<String> = GuestRotation.choose(all: cases, rotating: cases.count) { [cases[$0]] }
}

extension Trait where Self == ConditionTrait {
    /// Runs when the preflight rotation selects `name` this run.
    public static func inPreflightRotation(_ name: String) -> Self {
        let note = "preflight rotation: this run inspects \(PreflightRotation.selected.sorted().joined(separator: ", ")) "
            + "(HYPER2KVM_TEST_ALL_GUESTS=1 or scripts/test --all-guests inspects every guest)"
        return .enabled(if: PreflightRotation.selected.contains(name), Comment(rawValue: note))
    }
}
