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

    /// Runs a generator command inside the guest; nil runs it through the appliance. Tests
    /// of phony guests (which have no libc to run a real generator) pass a recording fake.
    var runGenerator: (@Sendable (GuestfsHandle, [String]) throws -> Void)?
    /// This fix's listings of images, shared with the boot check.
    let listings: InitramfsListings

    init(runGenerator: (@Sendable (GuestfsHandle, [String]) throws -> Void)? = nil,
         listings: InitramfsListings = InitramfsListings()) {
        self.runGenerator = runGenerator
        self.listings = listings
    }

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

    /// Kernel versions with modules installed (`/lib/modules/<v>`): the kernels a generator can build for.
    static func moduleVersions(_ guest: GuestfsHandle) throws -> [String] {
        guard try guest.isDirectory("/lib/modules") else { return [] }
        return try guest.list("/lib/modules").sorted()
    }

    static func detectTool(_ guest: GuestfsHandle) throws -> Tool? {
        for tool in [Tool.initramfsTools, .dracut, .mkinitcpio] {
            for binary in tool.binaries where try guest.exists(binary) {
                return tool
            }
        }
        return nil
    }

    /// An initramfs a boot loader entry loads, with the kernel it goes with.
    struct Target: Equatable, Sendable {
        var version: String
        /// The guest path the entry loads (symlinks resolved), whatever its name.
        var image: String
    }

    /// The images to rebuild: each one a boot loader entry loads for an installed kernel
    /// (microcode-only images left out), once. Entries whose kernel is not installed (no
    /// /lib/modules/<v>) cannot be rebuilt and are left to the boot check.
    static func targets(entries: [ResolvedBootEntry], installedKernels: [String]) -> [Target] {
        var targets: [Target] = []
        for entry in entries {
            guard let version = entry.version, installedKernels.contains(version) else { continue }
            for image in entry.initrds where !isMicrocode(image) && !targets.contains(where: { $0.image == image }) {
                targets.append(Target(version: version, image: image))
            }
        }
        return targets
    }

    /// Early-microcode images (`intel-ucode.img`, `amd-ucode.img`, `early_ucode.cpio`) hold no drivers.
    static func isMicrocode(_ path: String) -> Bool {
        let file = path.split(separator: "/").last.map(String.init) ?? path
        return file.contains("ucode") || file.contains("microcode")
    }

    /// The guest command that writes `target.image` for its kernel: the tool's own default
    /// invocation when the image has the tool's usual name, else the form that names the output
    /// (`dracut -f <image> <kver>`, `mkinitramfs -o <image> <kver>`, `mkinitcpio -g`).
    static func rebuildCommand(_ tool: Tool, target: Target) -> [String] {
        let usual = target.image == tool.imagePath(kernel: target.version)
        switch tool {
        case .initramfsTools:
            return usual ? ["update-initramfs", "-u", "-k", target.version] : ["mkinitramfs", "-o", target.image, target.version]
        case .dracut:
            return ["dracut", "-f", target.image, target.version]
        case .mkinitcpio:
            return ["mkinitcpio", "-k", target.version, "-g", target.image]
        }
    }

    /// Adds the drivers to the config; then, for each target image that lacks them, checks
    /// space, rebuilds it with the guest's own tool and verifies. Returns why images were
    /// not rebuilt, when some were not.
    func apply(guest: GuestfsHandle, editor: GuestFileEditor, tool: Tool, targets: [Target]) throws -> SkippedGuestFix? {
        guard !targets.isEmpty else {
            return SkippedGuestFix(area: "initramfs", reason: "no boot loader entry loads an initramfs of an installed kernel")
        }
        var versions: [String] = []
        for target in targets where !versions.contains(target.version) { versions.append(target.version) }
        let perKernel = try versions.map { version -> KernelModules in
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
        for target in targets {
            guard let kernel = perKernel.first(where: { $0.version == target.version }) else { continue }
            let image = target.image
            if let needed = kernel.neededInImage, try guest.isFile(image),
               let inside = listings.modules(guest: guest, tool: tool, image: image), needed.isSubset(of: inside) {
                kept.append(needed.isEmpty
                    ? "\(image) (the virtio drivers are built into \(kernel.version))"
                    : "\(image) (already holds \(needed.sorted().joined(separator: " ")))")
                continue
            }
            try checkSpace(guest: guest, image: image)
            listings.forget(image)
            let command = Self.rebuildCommand(tool, target: target)
            try rebuild(guest: guest, command: command, image: image)
            try verify(guest: guest, tool: tool, image: image, kernel: kernel)
            editor.record(GuestFixChange(area: "initramfs", file: image,
                                         before: "without virtio drivers",
                                         after: "rebuilt by \(command.joined(separator: " ")) with \(modules.joined(separator: " "))"))
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

    /// The kernel modules inside an initramfs image, listed by the guest's own tool, else by
    /// the appliance (gzip or uncompressed cpio only); nil when neither can list it.
    /// `scratchDirectory`: a writable TMPDIR for the lister when the guest is mounted read-only
    /// (unmkinitramfs copies the main archive to a temp file when an early cpio precedes it).
    static func modulesInside(guest: GuestfsHandle, tool: Tool?, image: String, scratchDirectory: String? = nil) -> Set<String>? {
        if let tool, var lister = lister(tool, image: image) {
            if let scratchDirectory { lister = ["env", "TMPDIR=\(scratchDirectory)"] + lister }
            if let listing = try? guest.command(lister) { return moduleNames(in: listing, takeKeysOnly: false) }
        }
        guard let files = try? guest.initrdList(image) else { return nil }
        return moduleNames(in: files.joined(separator: "\n"), takeKeysOnly: false)
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

    private func checkSpace(guest: GuestfsHandle, image: String) throws {
        let current = try guest.isFile(image) ? try guest.fileSize(image) : 0
        let required = Self.requiredBootSpace(currentImageBytes: current)
        let directory = (image as NSString).deletingLastPathComponent
        let (available, _) = try guest.freeSpace(directory.isEmpty ? "/" : directory)
        guard available >= required else {
            throw StageError(.noSpace, file: directory,
                             "not enough free space in the guest's \(directory) to rebuild \(image): \(available / 1_048_576) MiB free, "
                                 + "\(required / 1_048_576) MiB needed (current image \(current / 1_048_576) MiB + the new one); "
                                 + "grow the filesystem or remove old kernels and convert again")
        }
    }

    private func rebuild(guest: GuestfsHandle, command: [String], image: String) throws {
        do {
            if let runGenerator { try runGenerator(guest, command) } else { try guest.command(command) }
        } catch let error as StageError {
            throw StageError(error.code, file: image, "\(command.joined(separator: " ")) \(StageError.guestToolFailed): \(error.message)")
        }
    }

    /// Lists the rebuilt image and fails unless it holds what the disk needs to appear on
    /// virtio-blk, dependencies included: a module whose dependency is missing does not load.
    private func verify(guest: GuestfsHandle, tool: Tool, image: String, kernel: KernelModules) throws {
        guard !kernel.neededToBoot.isEmpty else { return }
        guard let inside = listings.modules(guest: guest, tool: tool, image: image) else {
            throw StageError(.toolFailed, file: image, "the rebuilt initramfs cannot be listed (neither \(Self.lister(tool, image: image)?.first ?? tool.rawValue) nor the appliance's cpio could read it)")
        }
        let missing = kernel.neededToBoot.subtracting(inside)
        guard missing.isEmpty else {
            throw StageError(.toolFailed, file: image,
                             "the rebuilt initramfs lacks \(missing.sorted().joined(separator: " ")); "
                                 + "the guest would not find its disk on virtio")
        }
    }
}
