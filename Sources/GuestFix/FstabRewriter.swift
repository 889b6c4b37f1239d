import Foundation
import Stages

/// A device named in a guest config file, with what is known about where it is used.
struct DeviceReference: Equatable, Sendable {
    var spec: String
    var kind: BlockDeviceSpec
    /// The fstab mountpoint of the line (nil for crypttab and kernel command lines).
    var mountpoint: String?

    init(spec: String, mountpoint: String? = nil) {
        self.spec = spec
        self.kind = BlockDeviceSpec(spec)
        self.mountpoint = mountpoint
    }

    /// Whether `mode` rewrites this reference. `minimal` rewrites only names the converted
    /// VM's virtio hardware cannot resolve: a /dev/vdX name already is a virtio name (the
    /// source ran on KVM), so it stays, where `stabilize-all` pins it to a UUID as well.
    func needsRewrite(in mode: ConversionOptions.FstabMode) -> Bool {
        guard kind.needsStabilising(in: mode) else { return false }
        return mode != .minimal || !spec.hasPrefix("/dev/vd")
    }
}

/// Rewrites the device column of `/etc/fstab` or `/etc/crypttab` to stable identifiers
/// (`UUID=`, else `PARTUUID=`, else `LABEL=`) according to `fstab_mode`:
/// `stabilize-all` every bus-bound name, `minimal` only those virtio cannot resolve,
/// `bypath-only` only by-path/by-id links, `noop` nothing. `UUID=`, `LABEL=`, LVM and md
/// names are stable already and never touched.
///
/// Works on text, line by line: comments, blank lines, options, field spacing and the other
/// columns stay byte-for-byte as they were; only the device field is replaced. A device the
/// resolver cannot map (a disk the guest no longer has) is left as it is and reported.
struct FstabRewriter: Sendable {
    enum Table: String, Sendable {
        /// `<spec> <mountpoint> <type> <options> <dump> <pass>`
        case fstab
        /// `<name> <device> <keyfile> <options>`
        case crypttab

        var deviceColumn: Int { self == .fstab ? 0 : 1 }
        var path: String { self == .fstab ? "/etc/fstab" : "/etc/crypttab" }
    }

    var table: Table
    var mode: ConversionOptions.FstabMode

    init(table: Table, mode: ConversionOptions.FstabMode) {
        self.table = table
        self.mode = mode
    }

    /// - Parameter resolve: the stable identifier (`UUID=…`) for a device, or nil when the
    ///   device cannot be found in the converted disks.
    func rewrite(_ text: String, resolve: (DeviceReference) -> String?) -> TextRewriteResult {
        var lines = text.components(separatedBy: "\n")
        var rewrites: [TextEdit] = []
        var unresolved: [String] = []
        for index in lines.indices {
            let line = lines[index]
            if line.drop(while: { $0 == " " || $0 == "\t" }).first == "#" { continue }
            let fields = TableLine.fieldRanges(line)
            guard fields.count > table.deviceColumn else { continue }
            let spec = String(line[fields[table.deviceColumn]])
            let mountpoint = table == .fstab && fields.count > 1 ? String(line[fields[1]]) : nil
            let reference = DeviceReference(spec: spec, mountpoint: mountpoint)
            guard reference.needsRewrite(in: mode) else { continue }
            guard let stable = resolve(reference) else {
                unresolved.append(spec)
                continue
            }
            var edited = line
            edited.replaceSubrange(fields[table.deviceColumn], with: stable)
            lines[index] = edited
            rewrites.append(TextEdit(line: index + 1, before: line, after: edited))
        }
        return TextRewriteResult(text: lines.joined(separator: "\n"), edits: rewrites, unresolved: unresolved)
    }
}

/// One changed line of a text file.
struct TextEdit: Equatable, Sendable {
    /// 1-based line number.
    var line: Int
    var before: String
    var after: String
    init(line: Int, before: String, after: String) {
        self.line = line
        self.before = before
        self.after = after
    }
}

/// A rewritten config file and what changed in it.
struct TextRewriteResult: Equatable, Sendable {
    var text: String
    var edits: [TextEdit]
    /// Device specs that should have been stabilised but could not be resolved.
    var unresolved: [String]
    var changed: Bool { !edits.isEmpty }

    init(text: String, edits: [TextEdit] = [], unresolved: [String] = []) {
        self.text = text
        self.edits = edits
        self.unresolved = unresolved
    }
}

/// Whitespace-separated fields of one config line, as ranges into the line.
enum TableLine {
    static func fieldRanges(_ line: String) -> [Range<String.Index>] {
        var ranges: [Range<String.Index>] = []
        var index = line.startIndex
        while index < line.endIndex {
            while index < line.endIndex, line[index] == " " || line[index] == "\t" || line[index] == "\r" {
                index = line.index(after: index)
            }
            guard index < line.endIndex else { break }
            let start = index
            while index < line.endIndex, line[index] != " ", line[index] != "\t", line[index] != "\r" {
                index = line.index(after: index)
            }
            ranges.append(start..<index)
        }
        return ranges
    }
}

extension FstabRewriter {
    /// Rewrites the table in the guest (when it exists); returns warnings for devices left as they were.
    func apply(editor: GuestFileEditor, resolver: StableDeviceResolver) throws -> [String] {
        guard mode != .noop, let text = try editor.read(table.path) else { return [] }
        let result = rewrite(text) { resolver.stableName(for: $0) }
        if result.changed {
            try editor.replace(table.path, area: table.rawValue, with: result.text, edits: result.edits)
        }
        return result.unresolved.map { "\(table.path): \($0) names no disk of this guest (or has no UUID/PARTUUID/LABEL); left unchanged" }
    }
}
