import Foundation
import Stages

/// Makes the guest's initramfs able to find its root disk on virtio: adds the virtio
/// drivers to the guest's initramfs configuration, then rebuilds the image of every
/// installed kernel whose image lacks them with the guest's own tool, and checks that
/// virtio_blk is inside. An image that already holds every driver (Debian's default
/// `MODULES=most`, dracut without hostonly, a guest that ran on KVM before) is kept: the
/// rebuild is the slowest step of a conversion and would change nothing that boots.
struct InitramfsRegenerator: Sendable {
    /// The generators we know, found by their binaries inside the guest.
    enum Tool: String, Codable, Sendable {
        case initramfsTools = "initramfs-tools"
        case dracut
        case mkinitcpio

        var binaries: [String] {
            switch self {
            case .initramfsTools: ["/usr/sbin/update-initramfs", "/sbin/update-initramfs"]
            case .dracut: ["/usr/bin/dracut", "/usr/sbin/dracut", "/sbin/dracut"]
            case .mkinitcpio: ["/usr/bin/mkinitcpio"]
            }
        }

        /// The image path this tool writes for kernel `version`.
        func imagePath(kernel version: String) -> String {
            switch self {
            case .initramfsTools: "/boot/initrd.img-\(version)"
            case .dracut: "/boot/initramfs-\(version).img"
            case .mkinitcpio: "/boot/initramfs-linux.img"
            }
        }
    }

    /// Always wanted; without virtio_blk (or virtio_scsi) and virtio_pci the root disk is invisible.
    static let requiredModules = ["virtio_blk", "virtio_scsi", "virtio_net", "virtio_pci"]
    /// Wanted when the kernel has them as modules (older kernels; built in elsewhere).
    static let optionalModules = ["virtio", "virtio_ring"]
    /// What the root disk needs in the image on virtio-blk: the driver and its PCI transport.
    /// virtio_net is not among them: udev loads it from the root filesystem.
    static let bootModules = ["virtio_blk", "virtio_pci"]

    static let dracutConfigPath = "/etc/dracut.conf.d/hyper2kvm-virtio.conf"
    static let initramfsToolsModulesPath = "/etc/initramfs-tools/modules"
    static let mkinitcpioConfigPath = "/etc/mkinitcpio.conf"

    init() {}

    // MARK: - Pure logic

    /// The modules to add for a kernel, given its `modules.dep` and `modules.builtin`
    /// contents (nil when the file is missing). Built-in drivers need no listing.
    static func modules(modulesDep: String?, modulesBuiltin: String?) -> [String] {
        guard let modulesDep else { return requiredModules }
        let available = moduleNames(in: modulesDep, takeKeysOnly: true)
        let builtin = moduleNames(in: modulesBuiltin ?? "", takeKeysOnly: false)
        return (requiredModules + optionalModules).filter { available.contains($0) && !builtin.contains($0) }
    }

    /// Module names (`virtio_blk`) from modules.dep (`kernel/…/virtio_blk.ko.xz: deps`) or
    /// modules.builtin (`kernel/…/virtio.ko`). Dashes and underscores are the same to modprobe.
    static func moduleNames(in text: String, takeKeysOnly: Bool) -> Set<String> {
        var names: Set<String> = []
        for line in text.split(separator: "\n") {
            let path = takeKeysOnly ? line.prefix { $0 != ":" } : line
            guard let file = path.split(separator: "/").last else { continue }
            guard let range = file.range(of: ".ko") else { continue }
            names.insert(file[..<range.lowerBound].replacingOccurrences(of: "-", with: "_"))
        }
        return names
    }

    /// What a rebuilt image must hold for the root disk to appear on virtio-blk: those of
    /// ``bootModules`` the kernel has as loadable modules, with their dependencies when
    /// `modules.dep` is known. Empty when the drivers are built in.
    static func bootCritical(modules: [String], modulesDep: String?) -> Set<String> {
        let loadable = modules.filter { bootModules.contains($0) }
        guard let modulesDep else { return Set(loadable) }
        return withDependencies(loadable, modulesDep: modulesDep)
    }

    /// `modules` and everything they depend on, by `modules.dep` (which lists the whole
    /// closure on each line, so one lookup per module is enough).
    static func withDependencies(_ modules: [String], modulesDep: String) -> Set<String> {
        var result = Set(modules)
        for line in modulesDep.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let names = moduleNames(in: String(line[..<colon]), takeKeysOnly: false)
            guard let name = names.first, modules.contains(name) else { continue }
            let dependencies = line[line.index(after: colon)...].split(separator: " ").map(String.init).joined(separator: "\n")
            result.formUnion(moduleNames(in: dependencies, takeKeysOnly: false))
        }
        return result
    }

    /// `/etc/initramfs-tools/modules` with the missing modules appended (one per line, as
    /// the file format wants), or nil when all are listed already.
    static func initramfsToolsModules(_ text: String, adding modules: [String]) -> String? {
        let listed = Set(text.split(separator: "\n").compactMap { line -> String? in
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty, !trimmed.hasPrefix("#") else { return nil }
            return trimmed.split(separator: " ").first.map { String($0).replacingOccurrences(of: "-", with: "_") }
        })
        let missing = modules.filter { !listed.contains($0) }
        guard !missing.isEmpty else { return nil }
        var result = text
        if !result.isEmpty && !result.hasSuffix("\n") { result += "\n" }
        result += "# Added by hyper2kvm: virtio drivers for the KVM disk and network.\n"
        result += missing.map { $0 + "\n" }.joined()
        return result
    }

    /// Our dracut drop-in (the `+=` and the spaces inside the quotes are required by dracut).
    static func dracutConfig(modules: [String]) -> String {
        "# Added by hyper2kvm: virtio drivers for the KVM disk and network.\nadd_drivers+=\" \(modules.joined(separator: " ")) \"\n"
    }

    /// `/etc/mkinitcpio.conf` with the modules added to `MODULES=(…)`, or nil when nothing changes.
    static func mkinitcpioConfig(_ text: String, adding modules: [String]) -> TextRewriteResult? {
        var lines = text.components(separatedBy: "\n")
        guard let index = lines.firstIndex(where: { $0.hasPrefix("MODULES=(") }),
              let close = lines[index].lastIndex(of: ")") else { return nil }
        let line = lines[index]
        let inside = line[line.index(line.startIndex, offsetBy: "MODULES=(".count)..<close]
        let present = inside.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        let missing = modules.filter { !present.contains($0) }
        guard !missing.isEmpty else { return nil }
        let edited = "MODULES=(" + (present + missing).joined(separator: " ") + ")" + line[line.index(after: close)...]
        lines[index] = edited
        return TextRewriteResult(text: lines.joined(separator: "\n"), edits: [TextEdit(line: index + 1, before: line, after: edited)])
    }

    /// Bytes that must be free in /boot before a rebuild: the new image is written beside the
    /// old one before the rename, and may grow (new drivers, compression differences).
    static func requiredBootSpace(currentImageBytes: Int64) -> Int64 {
        let estimatedNew = currentImageBytes + currentImageBytes / 4 + 8 * 1024 * 1024
        return estimatedNew + 16 * 1024 * 1024
    }

    // MARK: - Application

    /// Installed kernels: `/lib/modules/<v>` directories with a `/boot/vmlinuz-<v>`.
    static func installedKernels(_ guest: GuestfsHandle) throws -> [String] {
        guard try guest.isDirectory("/lib/modules") else { return [] }
        return try guest.list("/lib/modules").filter { version in
            try guest.exists("/boot/vmlinuz-\(version)")
        }.sorted()
    }

    static func detectTool(_ guest: GuestfsHandle) throws -> Tool? {
        for tool in [Tool.initramfsTools, .dracut, .mkinitcpio] {
            for binary in tool.binaries where try guest.exists(binary) {
                return tool
            }
        }
        return nil
    }

    /// Adds the drivers to the config; then, for each kernel whose image lacks them, checks
    /// space, rebuilds and verifies. Returns why images were not rebuilt, when some were not.
    func apply(guest: GuestfsHandle, editor: GuestFileEditor, kernels: [String]) throws -> SkippedGuestFix? {
        guard !kernels.isEmpty else {
            return SkippedGuestFix(area: "initramfs", reason: "no installed kernel found (no /boot/vmlinuz-<v> with /lib/modules/<v>)")
        }
        guard let tool = try Self.detectTool(guest) else {
            throw StageError(.unsupportedGuest, file: "/boot",
                             "cannot add virtio drivers to the initramfs: none of update-initramfs, dracut or mkinitcpio is installed in the guest")
        }
        let perKernel = try kernels.map { version -> KernelModules in
            let base = "/lib/modules/\(version)"
            let dep = try guest.isFile("\(base)/modules.dep") ? try guest.cat("\(base)/modules.dep") : nil
            let builtin = try guest.isFile("\(base)/modules.builtin") ? try guest.cat("\(base)/modules.builtin") : nil
            let modules = Self.modules(modulesDep: dep, modulesBuiltin: builtin)
            // Without modules.dep we cannot tell what the image needs: rebuild.
            let needed = dep.map { Self.withDependencies(modules, modulesDep: $0) }
            return KernelModules(version: version, modules: modules, neededInImage: needed,
                                 neededToBoot: Self.bootCritical(modules: modules, modulesDep: dep))
        }
        // One config for all kernels: the union (a name a kernel lacks is skipped by the tool),
        // written even when no image is rebuilt, so the guest's next kernel gets them too.
        var modules: [String] = []
        for kernel in perKernel { for name in kernel.modules where !modules.contains(name) { modules.append(name) } }
        try configure(tool, modules: modules, editor: editor)

        var kept: [String] = []
        for kernel in perKernel {
            let image = tool.imagePath(kernel: kernel.version)
            if let needed = kernel.neededInImage, try guest.isFile(image),
               let inside = try modulesInside(guest: guest, tool: tool, image: image), needed.isSubset(of: inside) {
                kept.append(needed.isEmpty
                    ? "\(image) (the virtio drivers are built into \(kernel.version))"
                    : "\(image) (already holds \(needed.sorted().joined(separator: " ")))")
                continue
            }
            try checkSpace(guest: guest, tool: tool, kernel: kernel.version)
            try rebuild(guest: guest, tool: tool, kernel: kernel.version)
            try verify(guest: guest, tool: tool, kernel: kernel)
            editor.record(GuestFixChange(area: "initramfs", file: image,
                                         before: "without virtio drivers", after: "rebuilt by \(tool.rawValue) with \(modules.joined(separator: " "))"))
        }
        guard !kept.isEmpty else { return nil }
        return SkippedGuestFix(area: "initramfs", reason: "not rebuilt, nothing to add: " + kept.joined(separator: "; "))
    }

    /// What one kernel has as loadable virtio modules, what its image must hold for them
    /// to load (nil when the kernel has no modules.dep), and the part of that without which
    /// the guest cannot find its disk.
    struct KernelModules {
        var version: String
        var modules: [String]
        var neededInImage: Set<String>?
        var neededToBoot: Set<String>
    }

    /// The kernel modules inside an initramfs image, listed by the guest's own tool; nil
    /// when the tool has no lister or the listing fails (the image is then rebuilt).
    private func modulesInside(guest: GuestfsHandle, tool: Tool, image: String) throws -> Set<String>? {
        guard let lister = Self.lister(tool, image: image) else { return nil }
        do {
            return Self.moduleNames(in: try guest.command(lister), takeKeysOnly: false)
        } catch is StageError {
            return nil
        }
    }

    static func lister(_ tool: Tool, image: String) -> [String]? {
        switch tool {
        case .initramfsTools: ["lsinitramfs", image]
        case .dracut: ["lsinitrd", image]
        case .mkinitcpio: nil
        }
    }

    private func configure(_ tool: Tool, modules: [String], editor: GuestFileEditor) throws {
        switch tool {
        case .initramfsTools:
            let current = try editor.read(Self.initramfsToolsModulesPath) ?? ""
            guard let updated = Self.initramfsToolsModules(current, adding: modules) else { return }
            let added = updated.dropFirst(current.count)
            try editor.replace(Self.initramfsToolsModulesPath, area: "initramfs", with: updated,
                               edits: [TextEdit(line: 0, before: "", after: String(added))])
        case .dracut:
            try editor.create(Self.dracutConfigPath, area: "initramfs", content: Self.dracutConfig(modules: modules))
        case .mkinitcpio:
            guard let current = try editor.read(Self.mkinitcpioConfigPath),
                  let result = Self.mkinitcpioConfig(current, adding: modules) else { return }
            try editor.replace(Self.mkinitcpioConfigPath, area: "initramfs", with: result.text, edits: result.edits)
        }
    }

    private func checkSpace(guest: GuestfsHandle, tool: Tool, kernel version: String) throws {
        let image = tool.imagePath(kernel: version)
        let current = try guest.isFile(image) ? try guest.fileSize(image) : 0
        let required = Self.requiredBootSpace(currentImageBytes: current)
        let (available, _) = try guest.freeSpace("/boot")
        guard available >= required else {
            throw StageError(.noSpace, file: "/boot",
                             "not enough free space in the guest's /boot to rebuild \(image): \(available / 1_048_576) MiB free, "
                                 + "\(required / 1_048_576) MiB needed (current image \(current / 1_048_576) MiB + the new one); "
                                 + "grow the filesystem or remove old kernels and convert again")
        }
    }

    private func rebuild(guest: GuestfsHandle, tool: Tool, kernel version: String) throws {
        let arguments: [String] = switch tool {
        case .initramfsTools: ["update-initramfs", "-u", "-k", version]
        case .dracut: ["dracut", "-f", "--kver", version]
        case .mkinitcpio: ["mkinitcpio", "-P"]
        }
        do {
            try guest.command(arguments)
        } catch let error as StageError {
            throw StageError(error.code, file: tool.imagePath(kernel: version),
                             "\(arguments.joined(separator: " ")) failed inside the guest: \(error.message)")
        }
    }

    /// Lists the rebuilt image and fails unless it holds what the disk needs to appear on
    /// virtio-blk, dependencies included: a module whose dependency is missing does not load.
    private func verify(guest: GuestfsHandle, tool: Tool, kernel: KernelModules) throws {
        guard !kernel.neededToBoot.isEmpty else { return }
        let image = tool.imagePath(kernel: kernel.version)
        guard let lister = Self.lister(tool, image: image) else { return }
        let inside = Self.moduleNames(in: try guest.command(lister), takeKeysOnly: false)
        let missing = kernel.neededToBoot.subtracting(inside)
        guard missing.isEmpty else {
            throw StageError(.toolFailed, file: image,
                             "the rebuilt initramfs lacks \(missing.sorted().joined(separator: " ")) (checked with \(lister[0])); "
                                 + "the guest would not find its disk on virtio")
        }
    }
}
