/// One kernel a boot loader entry starts, with the initramfs images it loads, as the
/// entry writes them (paths relative to the filesystem the boot loader reads them from).
struct BootEntry: Equatable, Sendable {
    /// The config file the entry came from (a guest path).
    var config: String
    var title: String
    var kernel: String
    var initrds: [String]
    /// The kernel command line after the kernel path (grub) or the `options` line (BLS).
    var options: String
    /// `search … --set=root <uuid>` in force for the entry (grub), when the config names one:
    /// the filesystem the paths are relative to.
    var searchUUID: String?

    /// The version in the kernel's file name (`vmlinuz-6.1.0-18-amd64` → `6.1.0-18-amd64`),
    /// or nil for an unversioned name (`/vmlinuz`, a symlink Debian keeps at the root).
    var kernelVersion: String? { Self.version(ofKernelFile: kernel) }

    /// The entry as grub's blscfg loads it: grub variables in `initrd` replaced by their value
    /// in the environment block, or by nothing when unset (RHEL's `$tuned_initrd` is unset
    /// unless tuned adds an early image), so they are never taken for files; `options`
    /// expanded only when there is a block (without one it keeps the variable, and the boot
    /// check says the command line is not known).
    func expandingVariables(from environment: GrubEnvironmentBlock?) -> BootEntry {
        var entry = self
        entry.initrds = initrds.flatMap { word -> [String] in
            guard word.contains("$") else { return [word] }
            return (environment?.expand(word) ?? "").split(separator: " ").map(String.init)
        }
        if let environment, options.contains("$") { entry.options = environment.expand(options) }
        return entry
    }

    static func version(ofKernelFile path: String) -> String? {
        guard let file = path.split(separator: "/").last else { return nil }
        for prefix in ["vmlinuz-", "vmlinux-", "bzImage-", "kernel-"] where file.hasPrefix(prefix) && file.count > prefix.count {
            return String(file.dropFirst(prefix.count))
        }
        return nil
    }
}

/// Reads the kernel and initramfs each boot loader entry loads: grub `menuentry` blocks
/// (`linux`/`linuxefi`/`linux16` and `initrd`/`initrdefi`/`initrd16` lines) and Boot Loader
/// Specification entries (`/boot/loader/entries/*.conf`: `linux`, `initrd`, `options`).
/// Pure text parsing: which files exist, and where, is `BootPathResolver`'s job.
enum BootEntryParser {
    /// The entries of a grub.cfg in file order (grub's default entry 0 first).
    static func grubEntries(_ text: String, config: String) -> [BootEntry] {
        var entries: [BootEntry] = []
        var current: BootEntry?
        var globalSearch: String?
        var entrySearch: String?
        var depth = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("#") || line.isEmpty { continue }
            let words = GrubWords.split(line)
            guard let command = words.first else { continue }
            if command == "menuentry" {
                if let entry = current { entries.append(entry) }
                current = BootEntry(config: config, title: words.dropFirst().first ?? "", kernel: "", initrds: [],
                                    options: "", searchUUID: nil)
                entrySearch = nil
                depth = 1
                continue
            }
            if command == "search", let uuid = searchedUUID(words) {
                if current == nil { globalSearch = uuid } else { entrySearch = uuid }
                continue
            }
            guard current != nil else { continue }
            if line.hasSuffix("{") { depth += 1 }
            if line == "}" {
                depth -= 1
                if depth <= 0, let entry = current {
                    entries.append(entry)
                    current = nil
                }
                continue
            }
            if ["linux", "linuxefi", "linux16", "kernel"].contains(command), words.count > 1 {
                current?.kernel = stripGrubDevice(words[1])
                current?.options = words.dropFirst(2).joined(separator: " ")
                current?.searchUUID = entrySearch ?? globalSearch
            } else if ["initrd", "initrdefi", "initrd16"].contains(command) {
                current?.initrds = words.dropFirst().map(stripGrubDevice)
            }
        }
        if let entry = current { entries.append(entry) }
        return entries.filter { !$0.kernel.isEmpty }
    }

    /// A Boot Loader Specification entry (RHEL, Fedora, systemd-boot): `key value` lines.
    /// grub variables (`$tuned_initrd`) stay as words: see `BootEntry.expandingVariables`.
    static func blsEntry(_ text: String, config: String) -> BootEntry? {
        var entry = BootEntry(config: config, title: "", kernel: "", initrds: [], options: "", searchUUID: nil)
        for rawLine in text.split(separator: "\n") {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            guard !line.hasPrefix("#"), let space = line.firstIndex(where: { $0 == " " || $0 == "\t" }) else { continue }
            let key = String(line[..<space])
            let value = line[space...].trimmingCharacters(in: .whitespaces)
            switch key {
            case "title": entry.title = value
            case "linux": entry.kernel = value
            // A BLS entry may list several initrd lines (microcode first): all are loaded.
            case "initrd": entry.initrds += value.split(separator: " ").map(String.init)
            case "options": entry.options = entry.options.isEmpty ? value : entry.options + " " + value
            default: continue
            }
        }
        return entry.kernel.isEmpty ? nil : entry
    }

    /// Whether a grub.cfg reads its entries from BLS files (`blscfg`, RHEL 8+ and Fedora).
    static func usesBLS(_ grubConfig: String) -> Bool {
        grubConfig.split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces) == "blscfg" }
    }

    /// `(hd0,msdos1)/vmlinuz` and `($root)/vmlinuz` → `/vmlinuz`.
    static func stripGrubDevice(_ path: String) -> String {
        guard path.hasPrefix("("), let close = path.firstIndex(of: ")") else { return path }
        return String(path[path.index(after: close)...])
    }

    /// The UUID of `search [--no-floppy] --fs-uuid --set=root <uuid>` (or `-u`), if that is what the line says.
    static func searchedUUID(_ words: [String]) -> String? {
        guard words.contains("--fs-uuid") || words.contains("-u") || words.contains("--fs-uuid=") else { return nil }
        guard words.contains(where: { $0 == "--set=root" || $0 == "--set" || $0 == "-s" }) else { return nil }
        return words.last.flatMap { $0.hasPrefix("-") ? nil : $0 }
    }
}

/// grub's word splitting for the lines we read: blanks separate words, and single or double
/// quotes group them (titles like `'Debian GNU/Linux, with Linux 6.1'`).
enum GrubWords {
    static func split(_ line: String) -> [String] {
        var words: [String] = []
        var word = ""
        var quote: Character?
        var inWord = false
        for character in line {
            if let open = quote {
                if character == open { quote = nil } else { word.append(character) }
                continue
            }
            switch character {
            case "'", "\"":
                quote = character
                inWord = true
            case " ", "\t":
                if inWord { words.append(word) }
                word = ""
                inWord = false
            default:
                word.append(character)
                inWord = true
            }
        }
        if inWord { words.append(word) }
        return words
    }
}

/// Where a path a boot loader entry names really is in the guest's mounted tree. grub and
/// BLS paths are relative to one filesystem: the one `search --set=root` found, else the one
/// holding the config. When /boot is its own partition, `linux /vmlinuz-6.1` there is
/// `/boot/vmlinuz-6.1` in the guest; when /boot is a directory of /, the entry itself says
/// `/boot/vmlinuz-6.1`. Deriving the file from the generator's usual name instead is what
/// broke guests whose entries load something else.
struct BootPathResolver: Equatable, Sendable {
    /// Mountpoint → filesystem UUID of each mounted filesystem (UUID may be empty).
    var filesystems: [String: String]
    /// Mountpoint → the btrfs subvolume mounted there (`@`, `@/var`), from fstab's `subvol=`.
    var subvolumes: [String: String] = [:]

    /// fstab's `subvol=` of each entry, without leading slashes.
    static func subvolumes(of fstab: [FstabEntry]) -> [String: String] {
        var result: [String: String] = [:]
        for entry in fstab {
            guard let option = entry.options.first(where: { $0.hasPrefix("subvol=") }) else { continue }
            let path = String(option.dropFirst("subvol=".count).drop { $0 == "/" })
            if !path.isEmpty { result[entry.mountpoint] = path }
        }
        return result
    }

    /// The mountpoint of the filesystem holding `path` (longest mountpoint that contains it).
    func mountpoint(holding path: String) -> String {
        let candidates = filesystems.keys.filter { mountpoint in
            mountpoint == "/" || path == mountpoint || path.hasPrefix(mountpoint + "/")
        }
        return candidates.max { $0.count < $1.count } ?? "/"
    }

    /// The guest path of `path` as named by an entry of `entry.config`.
    func guestPath(_ path: String, in entry: BootEntry) -> String {
        var base = mountpoint(holding: entry.config)
        if let uuid = entry.searchUUID?.lowercased() {
            // btrfs subvolumes share their filesystem's UUID (SUSE mounts /var, /home and
            // /.snapshots from the root's filesystem). grub reads paths from the default
            // subvolume, which holds the config itself; failing that, the shortest mountpoint.
            let searched = filesystems.filter { !$0.value.isEmpty && $0.value.lowercased() == uuid }.keys
            if !searched.contains(base), let shortest = searched.min(by: { ($0.count, $0) < ($1.count, $1) }) {
                base = shortest
            }
        }
        let relative = path.hasPrefix("/") ? path : "/" + path
        // grub reads a btrfs filesystem from its top level unless the default subvolume was
        // changed: Debian's grub-mkconfig writes /@/boot/vmlinuz-… for a root in subvolume @.
        // Such a path is under the mountpoint of that subvolume (the longest match wins).
        for (mountpoint, subvolume) in subvolumes.sorted(by: { $0.value.count > $1.value.count }) {
            let prefix = "/" + subvolume
            guard relative.hasPrefix(prefix + "/") else { continue }
            let rest = String(relative.dropFirst(prefix.count))
            return mountpoint == "/" ? rest : mountpoint + rest
        }
        return base == "/" ? relative : base + relative
    }
}
