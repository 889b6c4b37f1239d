import Foundation
import Stages

/// Reads and edits one registry hive of the mounted guest through the libguestfs hivex
/// API, recording every value it sets as a `RegistryChange` (before → after).
///
/// libguestfs holds one open hive per handle, so an editor is used inside `open(…)` and
/// the hive is closed (after a commit when writing) before another is opened. Key paths are
/// backslash-separated and relative to the hive root (`ControlSet001\Services\viostor`);
/// lookups are case-insensitive like Windows'.
final class WindowsRegistryEditor {
    let guest: GuestfsHandle
    /// Guest path of the hive file.
    let hive: String
    let writable: Bool
    private(set) var changes: [RegistryChange] = []
    private let root: Int64

    private init(guest: GuestfsHandle, hive: String, writable: Bool) throws {
        self.guest = guest
        self.hive = hive
        self.writable = writable
        do {
            try guest.hivexOpen(hive, write: writable)
        } catch let error as StageError {
            throw StageError(.badInput, file: hive,
                             "the registry hive cannot be parsed, so the guest cannot be changed safely "
                                 + "(a damaged or partly written hive; run chkdsk/`sfc` in the source VM or restore the hive): \(error.message)")
        }
        do {
            root = try guest.hivexRoot()
        } catch {
            try? guest.hivexClose()
            throw StageError(.badInput, file: hive, "the registry hive has no readable root key: \(error)")
        }
    }

    /// Opens `hive`, runs `body`, then commits (when writable and something changed) and closes.
    /// The hive is closed whatever happens; a failed commit leaves the file as it was.
    static func open<T>(_ guest: GuestfsHandle, hive: String, writable: Bool,
                        _ body: (WindowsRegistryEditor) throws -> T) throws -> (result: T, changes: [RegistryChange]) {
        let editor = try WindowsRegistryEditor(guest: guest, hive: hive, writable: writable)
        do {
            let result = try body(editor)
            if writable && !editor.changes.isEmpty { try guest.hivexCommit() }
            try guest.hivexClose()
            return (result, editor.changes)
        } catch {
            try? guest.hivexClose()
            throw error
        }
    }

    // MARK: - Reading

    /// The node at `path`, or nil when any component is missing.
    func node(_ path: String) throws -> Int64? {
        var node = root
        for component in Self.components(path) {
            guard let child = try guest.hivexChild(node, named: component) else { return nil }
            node = child
        }
        return node
    }

    func value(_ path: String, _ name: String) throws -> RegistryValue? {
        guard let node = try node(path), let handle = try guest.hivexValue(node, named: name) else { return nil }
        return RegistryValue(type: try guest.hivexValueType(handle), data: [UInt8](try guest.hivexValueData(handle)))
    }

    /// Names of the subkeys of `path` (empty when the key is missing).
    func subkeys(_ path: String) throws -> [String] {
        guard let node = try node(path) else { return [] }
        return try guest.hivexChildren(node).map { try guest.hivexNodeName($0) }
    }

    // MARK: - Writing

    /// Sets `name` under `path` (creating missing keys); unchanged values are not rewritten
    /// and not recorded, so a rerun over an already fixed guest records nothing new.
    func set(_ path: String, _ name: String, _ value: RegistryValue) throws {
        precondition(writable, "set on a read-only hive")
        let before = try self.value(path, name)
        guard before != value else { return }
        let node = try createKey(path)
        try guest.hivexSetValue(node, key: name, type: value.type, data: Data(value.data))
        changes.append(RegistryChange(hive: hive, key: Self.components(path).joined(separator: "\\"), value: name,
                                      before: before?.regText, after: value.regText))
    }

    /// The node at `path`, creating each missing component.
    @discardableResult
    func createKey(_ path: String) throws -> Int64 {
        var node = root
        for component in Self.components(path) {
            if let child = try guest.hivexChild(node, named: component) {
                node = child
            } else {
                node = try guest.hivexAddChild(node, named: component)
            }
        }
        return node
    }

    static func components(_ path: String) -> [String] {
        path.split(separator: "\\", omittingEmptySubsequences: true).map(String.init)
    }
}
