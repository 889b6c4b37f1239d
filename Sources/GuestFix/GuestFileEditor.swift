import Foundation
import Stages

/// Changes files inside the mounted guest so that every change is recorded and undoable:
/// the original is copied first under `backupDirectory` (same path below it), then the new
/// content is written, and a `GuestFixChange` is kept for the report.
///
/// Backups live in one directory rather than beside each file (`<file>.orig`) because
/// several config loaders read every file of their directory: ifupdown sources
/// `/etc/network/interfaces.d/*`, initscripts read every `ifcfg-*`, NetworkManager reads
/// most names in `system-connections/`; a backup there would be applied as config.
final class GuestFileEditor {
    static let backupDirectory = "/var/lib/hyper2kvm/original-files"

    private let guest: GuestfsHandle
    private(set) var changes: [GuestFixChange] = []

    init(guest: GuestfsHandle) {
        self.guest = guest
    }

    /// The text of a regular file, or nil when there is none at `path`.
    func read(_ path: String) throws -> String? {
        guard try guest.isFile(path) else { return nil }
        return String(decoding: try guest.readFile(path), as: UTF8.self)
    }

    /// Paths (regular files) matching a glob, sorted.
    func files(matching pattern: String) throws -> [String] {
        try guest.glob(pattern).filter { try guest.isFile($0) }.sorted()
    }

    /// Replaces a file's content, recording the changed lines.
    func replace(_ path: String, area: String, with text: String, edits: [TextEdit]) throws {
        try keepOriginal(path)
        try guest.write(path, text)
        let before = edits.map(\.before).joined(separator: "\n")
        let after = edits.map(\.after).joined(separator: "\n")
        changes.append(GuestFixChange(area: area, file: path, before: before, after: after))
    }

    /// Writes a new file (or overwrites one, keeping the original).
    func create(_ path: String, area: String, content: String) throws {
        let previous = try read(path)
        if previous == content { return }
        if previous != nil { try keepOriginal(path) }
        let directory = (path as NSString).deletingLastPathComponent
        try guest.makeDirectories(directory)
        try guest.write(path, content)
        changes.append(GuestFixChange(area: area, file: path, before: previous ?? "(absent)", after: content))
    }

    /// Removes a file, keeping it under the backup directory.
    func remove(_ path: String, area: String) throws {
        guard let previous = try read(path) else { return }
        try keepOriginal(path)
        try guest.removeIfPresent(path)
        changes.append(GuestFixChange(area: area, file: path, before: previous,
                                      after: "(removed; original kept in \(Self.backupDirectory)\(path))"))
    }

    /// Records a change made by a guest tool (grub-mkconfig, update-initramfs) rather than by us.
    func record(_ change: GuestFixChange) {
        changes.append(change)
    }

    /// Copies the first version of `path` to the backup directory; later edits of the same
    /// file in this run keep that first, original version.
    func keepOriginal(_ path: String) throws {
        let backup = Self.backupDirectory + path
        if try guest.exists(backup) { return }
        try guest.makeDirectories((backup as NSString).deletingLastPathComponent)
        try guest.copy(path, to: backup)
    }
}
