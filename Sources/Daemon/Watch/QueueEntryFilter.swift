import Stages

/// What one name in the queue directory is to the daemon.
public enum QueueEntry: Sendable, Equatable {
    /// A file that is (or leads) a job of its own, with the input kind its extension says.
    /// The probe stage still checks the content; the extension only routes the file.
    case candidate(InputKind)
    /// A VMDK data extent (`x-flat.vmdk`, `x-s001.vmdk`, `x-f001.vmdk`, `x-delta.vmdk`,
    /// `x-sesparse.vmdk`): part of its descriptor's job, never a job of its own.
    case extent(ofDescriptor: String)
    /// Not for the daemon, and why.
    case ignored(IgnoreReason)

    public enum IgnoreReason: String, Sendable, Equatable {
        /// Leading `.`: hidden files, `.processed/`, `.errors/`, `.~lock` files, rsync temporaries.
        case hidden
        case directory
        /// A name a copy tool uses while the file is incomplete (`*.part`, `*.tmp`, `*~`…).
        case temporary
        /// An extension outside the table.
        case unsupportedExtension
    }
}

/// Decides which names in the queue directory are candidate jobs, and of which kind.
///
/// The table is upstream's (`.vmdk .ova .ovf .vhd .vhdx .raw .img .ami`) plus `.qcow2`, and
/// `.json .yaml .yml` for Artifact Manifests. Extensions are compared case-insensitively.
public enum QueueEntryFilter {
    /// Extension (lower case, no dot) → input kind.
    public static let kindsByExtension: [String: InputKind] = [
        "vmdk": .vmdk, "ova": .ova, "ovf": .ovf, "vhd": .vhd, "vhdx": .vhdx,
        "raw": .raw, "img": .raw, "ami": .ami, "qcow2": .qcow2,
        "json": .manifest, "yaml": .manifest, "yml": .manifest, "vmx": .vmx,
    ]

    /// Suffixes copy tools give files that are still arriving (browsers, rsync `--partial`,
    /// editors' backups, curl/wget conventions).
    public static let temporarySuffixes = [".part", ".tmp", ".partial", ".crdownload", "~"]

    /// Names of the daemon's own subdirectories in the watch directory.
    public static let processedDirectoryName = ".processed"
    public static let errorsDirectoryName = ".errors"

    public static func classify(_ name: String, isDirectory: Bool = false) -> QueueEntry {
        // Hidden first: covers `.processed`, `.errors`, `.~lock…#` and rsync's `.name.XXXXXX`.
        if name.hasPrefix(".") { return .ignored(.hidden) }
        if isDirectory { return .ignored(.directory) }
        let lowered = name.lowercased()
        if temporarySuffixes.contains(where: { lowered.hasSuffix($0) }) { return .ignored(.temporary) }
        guard let (stem, fileExtension) = splitExtension(name),
              let kind = kindsByExtension[fileExtension.lowercased()]
        else { return .ignored(.unsupportedExtension) }
        if kind == .vmdk, let descriptorStem = descriptorStem(ofExtentStem: stem) {
            return .extent(ofDescriptor: descriptorStem + "." + fileExtension)
        }
        return .candidate(kind)
    }

    /// The input kind a name stands for, when it is a candidate job.
    public static func inputKind(of name: String) -> InputKind? {
        if case .candidate(let kind) = classify(name) { return kind }
        return nil
    }

    /// `("disk-flat", "vmdk")` for `disk-flat.vmdk`; nil without a non-empty stem and extension.
    static func splitExtension(_ name: String) -> (stem: String, fileExtension: String)? {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return nil }
        let fileExtension = name[name.index(after: dot)...]
        guard !fileExtension.isEmpty else { return nil }
        return (String(name[..<dot]), String(fileExtension))
    }

    /// `disk` for `disk-flat`, `disk-s001`, `disk-f012`, `disk-delta`, `disk-sesparse`.
    static func descriptorStem(ofExtentStem stem: String) -> String? {
        guard let dash = stem.lastIndex(of: "-"), dash != stem.startIndex else { return nil }
        let suffix = stem[stem.index(after: dash)...].lowercased()
        let isNamedExtent = ["flat", "delta", "sesparse"].contains(suffix)
        let isNumberedExtent = suffix.count >= 4
            && (suffix.hasPrefix("s") || suffix.hasPrefix("f"))
            && suffix.dropFirst().allSatisfy(\.isASCII) && suffix.dropFirst().allSatisfy(\.isNumber)
        guard isNamedExtent || isNumberedExtent else { return nil }
        return String(stem[..<dash])
    }
}
