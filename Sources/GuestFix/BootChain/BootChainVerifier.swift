import Stages

/// Checks, on the written disks mounted read-only, that the converted guest's boot chain
/// resolves on virtio: the default boot loader entry names a kernel and an initramfs that
/// exist where the boot loader reads them, that initramfs holds the virtio disk drivers (or
/// the kernel has them built in), and the root and every fstab entry the boot waits for are
/// named by something that still finds its device on virtio.
struct BootChainVerifier {
    let guest: GuestfsHandle
    let devices: GuestDeviceMap
    let resolver: BootPathResolver
    let tool: InitramfsRegenerator.Tool?
    /// The initramfs step's listings: an image it rebuilt and listed is not listed again.
    let listings: InitramfsListings

    /// Drivers without which the root disk does not appear on virtio-blk.
    static let diskDrivers = ["virtio_blk", "virtio_pci"]

    func verify(fstab: [FstabEntry]) -> BootChainCheck {
        var check = BootChainCheck()
        let found: (loader: String?, entries: [ResolvedBootEntry])
        do {
            found = try BootEntryFinder(guest: guest, resolver: resolver).find()
        } catch {
            check.problems.append("the boot loader configuration cannot be read: \(error)")
            return check
        }
        check.entries = found.entries.map {
            BootChainCheck.Entry(config: $0.entry.config, title: $0.entry.title, kernel: $0.kernel, initramfs: $0.initrds)
        }
        if let entry = found.entries.first {
            check.passed.append("boot loader: \(found.loader ?? "unknown"), default entry '\(entry.entry.title)' in \(entry.entry.config)")
            verify(entry, into: &check)
        } else {
            check.problems.append("no boot loader entry with a kernel found (grub.cfg menuentries, /boot/loader/entries): "
                + "the boot loader is unknown or its configuration is missing")
        }
        for entry in fstab where entry.neededToBoot {
            if entry.mountpoint == "/" || entry.type == "swap" || entry.isMountable {
                checkName(entry.spec, role: "fstab \(entry.mountpoint)", into: &check)
            }
        }
        return check
    }

    private func verify(_ entry: ResolvedBootEntry, into check: inout BootChainCheck) {
        if (try? guest.isFile(entry.kernel)) == true {
            check.passed.append("kernel \(entry.kernel) exists")
        } else {
            check.problems.append("the default entry's kernel \(entry.entry.kernel) (\(entry.kernel) in the guest) does not exist")
        }
        let images = entry.initrds.filter { !InitramfsRegenerator.isMicrocode($0) }
        let builtin = entry.version.flatMap { version -> Set<String>? in
            let path = "/lib/modules/\(version)/modules.builtin"
            guard (try? guest.isFile(path)) == true, let text = try? guest.cat(path) else { return nil }
            return InitramfsRegenerator.moduleNames(in: text, takeKeysOnly: false)
        } ?? []
        let needed = Set(Self.diskDrivers).subtracting(builtin)
        if images.isEmpty {
            if needed.isEmpty {
                check.passed.append("no initramfs, and the kernel has \(Self.diskDrivers.joined(separator: " ")) built in")
            } else {
                check.problems.append("the default entry loads no initramfs, and the kernel lacks built-in \(needed.sorted().joined(separator: " "))")
            }
        }
        for image in images {
            guard (try? guest.isFile(image)) == true else {
                check.problems.append("the default entry's initramfs \(image) does not exist")
                continue
            }
            guard !needed.isEmpty else {
                check.passed.append("\(image): the kernel has \(Self.diskDrivers.joined(separator: " ")) built in")
                continue
            }
            // The appliance's /dev (devtmpfs, bind-mounted into the guest) is the one writable
            // place while the guest is mounted read-only.
            guard let inside = listings.modules(guest: guest, tool: tool, image: image, scratchDirectory: "/dev") else {
                check.problems.append("\(image) cannot be listed to check for the virtio drivers")
                continue
            }
            let missing = needed.subtracting(inside)
            if missing.isEmpty {
                let scsi = inside.contains("virtio_scsi") ? " (and virtio_scsi)" : ""
                check.passed.append("\(image) holds \(needed.sorted().joined(separator: " "))\(scsi)")
            } else {
                check.problems.append("\(image) lacks \(missing.sorted().joined(separator: " ")): the root disk would not appear on virtio")
            }
        }
        let words = GrubWords.split(entry.entry.options)
        if let root = words.first(where: { $0.hasPrefix("root=") }).map({ String($0.dropFirst(5)) }) {
            checkName(root, role: "root= of the default entry", into: &check)
        } else if words.contains(where: { $0.hasPrefix("$") }) {
            check.passed.append("the default entry's options come from a grub variable (\(entry.entry.options)); root= not checked there")
        }
    }

    private func checkName(_ spec: String, role: String, into check: inout BootChainCheck) {
        guard GuestDeviceMap.survivesVirtio(spec) else {
            check.problems.append("\(role): \(spec) names the device by the old hypervisor's bus or controller; it does not exist on virtio")
            return
        }
        switch devices.resolve(spec) {
        case .device(let device): check.passed.append("\(role): \(spec) is \(device)")
        case .unresolved(let reason): check.problems.append("\(role): \(spec) does not resolve: \(reason)")
        }
    }
}
