import Stages

/// Makes the boot loader find the root filesystem on virtio: `root=`/`resume=` become
/// stable identifiers everywhere the guest keeps a kernel command line, grub's own
/// `GRUB_DISABLE_LINUX_UUID=true` is undone, `device.map` (which names the old disks) is
/// removed, and the guest's own grub tool regenerates `grub.cfg` (when `update_grub`) unless
/// the in-place edit already left it as a regenerated one would boot.
struct BootloaderFixer: Sendable {
    static let grubDefaults = "/etc/default/grub"
    /// Ubuntu's cloud images and packages add settings here (`50-cloudimg-settings.cfg`);
    /// grub-mkconfig reads them after /etc/default/grub, so a `root=` there wins.
    static let grubDefaultsDropIns = "/etc/default/grub.d/*.cfg"
    /// RHEL 8 keeps `kernelopts` here (on the ESP for UEFI, with /boot/grub2/grubenv a link to it).
    static let grubEnvironments = ["/boot/grub2/grubenv", "/boot/grub/grubenv", "/boot/efi/EFI/*/grubenv"]
    static let kernelCmdline = "/etc/kernel/cmdline"
    static let blsEntries = "/boot/loader/entries/*.conf"
    static let grubConfigs = [
        "/boot/grub/grub.cfg", "/boot/grub2/grub.cfg", "/boot/efi/EFI/*/grub.cfg",
        "/boot/grub/menu.lst", "/boot/grub/grub.conf",
    ]
    static let deviceMaps = ["/boot/grub/device.map", "/boot/grub2/device.map"]

    var runGuestTool: Bool

    init(runGuestTool: Bool) {
        self.runGuestTool = runGuestTool
    }

    /// Returns skipped parts and warnings. `installedKernels` are the versions inspection found.
    func apply(guest: GuestfsHandle, editor: GuestFileEditor, resolver: StableDeviceResolver,
               installedKernels: [String]) throws -> (skipped: [SkippedGuestFix], warnings: [String])
    {
        var skipped: [SkippedGuestFix] = []
        var warnings: [String] = []
        var unresolved: [String] = []
        let resolve: (DeviceReference) -> String? = { resolver.stableName(for: $0) }

        func rewrite(_ path: String, with rewriter: (String, (DeviceReference) -> String?) -> TextRewriteResult) throws {
            guard let text = try editor.read(path) else { return }
            let result = rewriter(text, resolve)
            for spec in result.unresolved {
                warnings.append("\(path): \(spec) names no disk of this guest; left unchanged")
                unresolved.append(spec)
            }
            if result.changed {
                try editor.replace(path, area: "bootloader", with: result.text, edits: result.edits)
            }
        }

        try rewrite(Self.grubDefaults, with: KernelCommandLineRewriter.rewriteGrubDefaults)
        for dropIn in try editor.files(matching: Self.grubDefaultsDropIns) {
            try rewrite(dropIn, with: KernelCommandLineRewriter.rewriteGrubDefaults)
        }
        for environment in try Self.grubEnvironments.flatMap({ try editor.files(matching: $0) }) {
            try rewrite(environment) { text, resolve in
                let (result, unfitted) = KernelCommandLineRewriter.rewriteGrubEnvironment(text, resolve: resolve)
                if unfitted {
                    warnings.append("\(environment): kernelopts with stable names does not fit in grub's fixed-size environment block; "
                        + "left unchanged (grub2-mkconfig rewrites it from \(Self.grubDefaults))")
                }
                return result
            }
        }
        try rewrite(Self.kernelCmdline, with: KernelCommandLineRewriter.rewriteKernelCmdlineFile)
        for entry in try editor.files(matching: Self.blsEntries) {
            try rewrite(entry, with: KernelCommandLineRewriter.rewriteBootLoaderEntry)
        }
        let configs = try Self.grubConfigs.flatMap { try editor.files(matching: $0) }
        for config in configs {
            try rewrite(config, with: KernelCommandLineRewriter.rewriteGrubConfig)
        }
        for map in Self.deviceMaps {
            try editor.remove(map, area: "bootloader")
        }

        guard runGuestTool else {
            skipped.append(SkippedGuestFix(area: "bootloader", reason: "update_grub is off: grub.cfg was edited in place, not regenerated"))
            return (skipped, warnings)
        }
        guard let (command, output) = try regenerationCommand(guest: guest, configs: configs) else {
            skipped.append(SkippedGuestFix(area: "bootloader", reason: "no grub2 configuration with update-grub/grub-mkconfig/grub2-mkconfig in the guest; existing configs were edited in place"))
            return (skipped, warnings)
        }
        // update-grub is the slowest step after the initramfs (minutes under emulation) and
        // rewrites a file we may already have made right; it runs only when it adds something.
        let edited = try editor.read(output) ?? ""
        guard let why = Self.reasonToRegenerate(editedConfig: edited, installedKernels: installedKernels,
                                                unresolved: unresolved) else {
            skipped.append(SkippedGuestFix(area: "bootloader", reason: "\(command[0]) not run: \(output), edited in place, "
                + "finds root by a stable name on every kernel line and lists exactly the installed kernels "
                + "(\(installedKernels.joined(separator: ", "))), as a regenerated one would; \(Self.grubDefaults) "
                + "was fixed too, so the guest's own next \(command[0]) keeps it so"))
            return (skipped, warnings)
        }
        do {
            try guest.command(command)
        } catch let error as StageError {
            throw StageError(error.code, file: output, "\(command.joined(separator: " ")) \(StageError.guestToolFailed): \(error.message)")
        }
        editor.record(GuestFixChange(area: "bootloader", file: output, before: "(previous grub.cfg)",
                                     after: "regenerated by \(command.joined(separator: " ")) (\(why))"))
        // The regenerated file must not bring back a bus-dependent root= (it would if some
        // other grub setting still injects one): fix it in place and say so.
        if let text = try editor.read(output) {
            let result = KernelCommandLineRewriter.rewriteGrubConfig(text, resolve: resolve)
            if result.changed {
                warnings.append("\(output): \(command[0]) still wrote bus-dependent root=/resume= devices; rewritten in place")
                try editor.replace(output, area: "bootloader", with: result.text, edits: result.edits)
            }
        }
        return (skipped, warnings)
    }

    /// Why the guest's grub tool must still run after `grub.cfg` was edited in place, or nil
    /// when the edited file boots on virtio as a regenerated one would: every kernel line
    /// names its root (and any resume) by a stable identifier, grub finds its files with
    /// `search` rather than by BIOS disk number, and the entries are exactly the installed
    /// kernels. Anything else (a BLS `blscfg` file with no kernel lines, a stale or missing
    /// entry, a device we could not resolve) is what the tool is for.
    static func reasonToRegenerate(editedConfig text: String, installedKernels: [String],
                                   unresolved: [String]) -> String? {
        if !unresolved.isEmpty {
            return "\(unresolved.joined(separator: ", ")) could not be replaced by a stable name"
        }
        let kernelLines = KernelCommandLineRewriter.grubKernelLines(text)
        if kernelLines.isEmpty { return "grub.cfg has no kernel lines of its own (BLS or another layout)" }
        var listed: Set<String> = []
        for line in kernelLines {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            let parameters = KernelCommandLineRewriter.deviceParameters(in: line)
            guard words.count > 1, let file = words[1].split(separator: "/").last, file.hasPrefix("vmlinuz-") else {
                // memtest86+ and the like look for no root device: they boot the same on virtio.
                if parameters.isEmpty && !line.contains("vmlinuz") { continue }
                return "a kernel line names no versioned kernel: \(line)"
            }
            listed.insert(String(file.dropFirst("vmlinuz-".count)))
            guard parameters.contains(where: { $0.name == "root" }) else { return "a kernel line has no root=: \(line)" }
            for parameter in parameters where DeviceReference(spec: parameter.value).kind.needsStabilising(in: .stabilizeAll) {
                return "a kernel line still names \(parameter.name)=\(parameter.value)"
            }
        }
        if listed != Set(installedKernels) {
            return "its entries (\(listed.sorted().joined(separator: ", "))) are not the installed kernels "
                + "(\(installedKernels.sorted().joined(separator: ", ")))"
        }
        let findsBySearch = text.split(separator: "\n").contains { line in
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            return trimmed.hasPrefix("search ") || trimmed.hasPrefix("search\t")
        }
        if !findsBySearch { return "grub.cfg finds /boot by disk number, not with search" }
        return nil
    }

    /// The guest's grub regeneration command and the file it writes, or nil without grub2.
    private func regenerationCommand(guest: GuestfsHandle, configs: [String]) throws -> ([String], String)? {
        let grub2Config = configs.first { $0 == "/boot/grub2/grub.cfg" } ?? configs.first { $0 == "/boot/grub/grub.cfg" }
        guard let output = grub2Config else { return nil }
        for binary in ["/usr/sbin/update-grub", "/sbin/update-grub"] where output == "/boot/grub/grub.cfg" {
            if try guest.isFile(binary) { return (["update-grub"], output) }
        }
        for tool in ["grub2-mkconfig", "grub-mkconfig"] {
            for directory in ["/usr/sbin", "/sbin", "/usr/bin"] where try guest.isFile("\(directory)/\(tool)") {
                return (["\(directory)/\(tool)", "-o", output], output)
            }
        }
        return nil
    }
}
