/// The names a guest may give one of its md arrays. libguestfs assembles every array under
/// a number of its own (/dev/md127), so the guest's `/dev/md0`, `/dev/md/root` or udev
/// link in fstab or on the kernel line must be matched by the array's identity, not by the
/// appliance's name. Pure: from `mdadm --detail --export` and the guest's mdadm.conf.
enum MDArrayNames {
    /// The array's superblock UUID as mdadm prints it (`8ef4498a:a730c2f6:602e9b89:34b30eef`), lower case.
    static func uuid(detail: [String: String]) -> String? {
        detail["uuid"].map { $0.lowercased() }.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// What udev links for the array (63-md-raid-arrays.rules: `disk/by-id/md-uuid-<UUID>`,
    /// `disk/by-id/md-name-<NAME>`, `md/<DEVNAME>`), `/dev/md/<name>` for the name without its
    /// `host:` part, and `/dev/mdN` when that name is a number N: mdadm assembles an array
    /// named `host:0` of its own host as md0.
    static func aliases(detail: [String: String]) -> [String] {
        var names: [String] = []
        if let uuid = detail["uuid"], !uuid.isEmpty { names.append("/dev/disk/by-id/md-uuid-" + uuid) }
        if let name = detail["name"], !name.isEmpty {
            names.append("/dev/disk/by-id/md-name-" + name)
            let short = String(name.split(separator: ":", omittingEmptySubsequences: false).last ?? "")
            if !short.isEmpty, !short.contains("/") {
                names.append("/dev/md/" + short)
                if short.allSatisfy(\.isASCIIDigit) { names.append("/dev/md" + short) }
            }
        }
        if let devname = detail["devname"], !devname.isEmpty, !devname.contains("/") { names.append("/dev/md/" + devname) }
        var seen = Set<String>()
        return names.filter { seen.insert($0).inserted }
    }

    /// The device names mdadm.conf's `ARRAY` lines give the array with this UUID
    /// (`ARRAY /dev/md0 metadata=1.2 name=host:0 UUID=…`): what the guest's own mdadm, and so
    /// its initramfs, assembles it as.
    static func configuredNames(mdadmConf text: String, uuid: String) -> [String] {
        var names: [String] = []
        for line in text.split(whereSeparator: \.isNewline) {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.count >= 2, words[0] == "ARRAY", words[1].hasPrefix("/dev/md") else { continue }
            let matches = words.dropFirst(2).contains { word in
                word.lowercased().hasPrefix("uuid=") && word.dropFirst(5).lowercased() == uuid.lowercased()
            }
            if matches { names.append(String(words[1])) }
        }
        return names
    }
}

private extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
