import Stages

/// What the guest's disks show about how they boot, gathered by `DiskBootFacts.gather`.
struct DiskBootFacts: Equatable, Sendable {
    /// "gpt", "msdos", or nil (no partition table / unreadable), of the boot disk.
    var partitionTable: String?
    /// EFI System Partitions (GPT type C12A7328-… or MBR id 0xEF), by device.
    var espPartitions: [String] = []
    /// FAT filesystems holding `EFI/*/*.efi` boot binaries, with the binaries found.
    var efiBinaries: [String: [String]] = [:]
    /// GPT BIOS boot partitions (type 21686148-…: where grub-pc keeps its core image on GPT).
    var biosBootPartitions: [String] = []
    /// Whether the first 440 bytes of the boot disk (the MBR's boot code) are not all zero.
    var mbrBootCode: Bool = false
    /// grub platforms installed in the guest: "x86_64-efi", "i386-pc" (from /boot/grub/<platform>
    /// and /usr/lib/grub/<platform>), and the packages dpkg/rpm name (grub-efi-amd64, grub-pc…).
    var grubPlatforms: Set<String> = []
    /// Whether the guest's fstab mounts /boot/efi (or /efi).
    var mountsESP: Bool = false
}

/// BIOS or UEFI from what the disk shows, for a guest whose source does not say (a bare
/// VMDK, VHD or raw image): UEFI boots from an EFI binary on an ESP; BIOS boots the MBR's
/// boot code (with grub-pc's core in a BIOS boot partition on GPT). A disk can carry both
/// (hybrid images); then the boot loader the guest has installed decides.
enum FirmwareDecider {
    static func decide(_ facts: DiskBootFacts) -> FirmwareDecision {
        var uefi: [String] = []
        var bios: [String] = []
        let binaries = facts.efiBinaries.sorted { $0.key < $1.key }.flatMap { device, files in files.map { "\(device):\($0)" } }
        if !facts.espPartitions.isEmpty {
            uefi.append("EFI System Partition \(facts.espPartitions.sorted().joined(separator: ", "))")
        }
        if !binaries.isEmpty { uefi.append("EFI boot binaries \(binaries.prefix(4).joined(separator: ", "))") }
        if facts.mountsESP { uefi.append("fstab mounts the ESP at /boot/efi") }
        if facts.grubPlatforms.contains("x86_64-efi") || facts.grubPlatforms.contains("i386-efi") {
            uefi.append("grub-efi is installed")
        }
        if !facts.biosBootPartitions.isEmpty {
            bios.append("BIOS boot partition \(facts.biosBootPartitions.sorted().joined(separator: ", "))")
        }
        if facts.mbrBootCode { bios.append("boot code in the MBR") }
        if facts.grubPlatforms.contains("i386-pc") { bios.append("grub-pc is installed") }
        if facts.partitionTable == "msdos" && facts.espPartitions.isEmpty { bios.append("MBR partition table without an ESP") }

        // An ESP is only bootable with a binary on it; a bare ESP partition type proves little.
        let bootableESP = !binaries.isEmpty
        let uefiLoader = facts.grubPlatforms.contains("x86_64-efi") || facts.grubPlatforms.contains("i386-efi")
        let biosLoader = facts.grubPlatforms.contains("i386-pc")
        let firmware: Firmware
        var reasons: [String]
        switch (bootableESP, !bios.isEmpty) {
        case (true, false):
            firmware = .uefi
            reasons = uefi
        case (true, true):
            // Hybrid disk: the installed boot loader says which path the guest maintains.
            if uefiLoader && !biosLoader || facts.mountsESP && !biosLoader {
                firmware = .uefi
                reasons = uefi + ["the disk also boots BIOS (\(bios.joined(separator: "; "))), but the guest's boot loader is grub-efi"]
            } else {
                firmware = .bios
                reasons = bios + ["the disk also has \(uefi.joined(separator: "; ")), but the guest's boot loader is grub-pc"]
            }
        case (false, true):
            firmware = .bios
            reasons = bios + (uefi.isEmpty ? [] : ["no EFI boot binary found on any FAT filesystem (\(uefi.joined(separator: "; ")))"])
        case (false, false):
            firmware = .unknown
            reasons = ["no ESP with EFI binaries, no BIOS boot partition and no MBR boot code"] + uefi
        }
        return FirmwareDecision(firmware: firmware, decidedBy: "disk", reasons: reasons)
    }
}
