import Foundation
import Stages

/// The operator's virtio-win drivers: an unpacked directory or the ISO itself, read on the
/// host. Paths are "/"-separated and relative to the tree's top (`viostor/w10/amd64/viostor.sys`).
struct VirtioWinDriverSource {
    enum Kind: String, Sendable { case directory, iso }

    let location: String
    let kind: Kind
    /// Every regular file in the tree.
    let files: [String]
    private let iso: ISO9660Image?
    private let isoEntries: [String: ISO9660Image.Entry]

    /// Opens `path` as a directory if it is one, else as an ISO image.
    init(path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw StageError(.badInput, file: path,
                             "the virtio-win drivers (key virtio_win, or VIRTIO_WIN) do not exist: expected a virtio-win ISO or directory")
        }
        location = path
        if isDirectory.boolValue {
            kind = .directory
            iso = nil
            isoEntries = [:]
            files = try Self.listDirectory(path)
        } else {
            kind = .iso
            let image = try ISO9660Image(url: URL(fileURLWithPath: path))
            iso = image
            isoEntries = Dictionary(image.files.map { ($0.path, $0) }, uniquingKeysWith: { first, _ in first })
            files = image.files.map(\.path)
        }
    }

    /// A host file holding `file`'s bytes: the file itself for a directory, otherwise a copy
    /// extracted into `scratch`.
    func hostFile(for file: String, scratch: URL) throws -> URL {
        switch kind {
        case .directory:
            return URL(fileURLWithPath: location).appendingPathComponent(file)
        case .iso:
            guard let iso, let entry = isoEntries[file] else {
                throw StageError(.badInput, file: location, "\(file) is not in the ISO")
            }
            let target = scratch.appendingPathComponent(file.replacingOccurrences(of: "/", with: "_"))
            do {
                try iso.read(entry).write(to: target)
            } catch let error as StageError {
                throw error
            } catch {
                throw StageError(.ioFailed, file: target.path, "extracting \(file) from the virtio-win ISO failed: \(error.localizedDescription)")
            }
            return target
        }
    }

    private static func listDirectory(_ path: String) throws -> [String] {
        let root = URL(fileURLWithPath: path).resolvingSymlinksInPath()
        guard let enumerator = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) else {
            throw StageError(.ioFailed, file: path, "cannot list the virtio-win directory")
        }
        var files: [String] = []
        let prefix = root.path.hasSuffix("/") ? root.path : root.path + "/"
        for case let url as URL in enumerator {
            guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true else { continue }
            let full = url.resolvingSymlinksInPath().path
            guard full.hasPrefix(prefix) else { continue }
            files.append(String(full.dropFirst(prefix.count)))
        }
        return files.sorted()
    }
}

/// One driver chosen from the tree: its directory and files.
struct VirtioWinDriver: Sendable, Equatable {
    /// Lower-case service/driver name: "viostor", "netkvm", …
    var name: String
    /// The tree directory used, e.g. "viostor/w10/amd64".
    var directory: String
    /// Paths in the tree, e.g. "viostor/w10/amd64/viostor.sys".
    var files: [String]

    /// The last component of a tree path: "viostor/w10/amd64/viostor.sys" → "viostor.sys".
    static func fileName(of path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }

    /// The file with `name` + `extension`, e.g. the driver's `.sys`.
    func file(withExtension ext: String) -> String? {
        files.first { Self.fileName(of: $0).lowercased() == "\(name).\(ext)" }
            ?? files.first { $0.lowercased().hasSuffix(".\(ext)") }
    }
}

/// Picks, for a Windows release, the drivers to inject from a virtio-win tree.
enum VirtioWinDriverSelection {
    /// The boot storage driver (virtio-blk): without it the guest cannot boot on virtio.
    static let storageDriver = "viostor"
    /// Tree directory → the name the driver's files use (e.g. vioserial ships vioser.*).
    static let optionalDrivers: [(directory: String, name: String)] = [
        ("vioscsi", "vioscsi"), ("NetKVM", "netkvm"), ("Balloon", "balloon"), ("vioserial", "vioser"),
        ("viorng", "viorng"), ("pvpanic", "pvpanic"), ("vioinput", "vioinput"),
    ]

    /// The drivers for `release`: viostor is required (with its .sys and .inf), the others
    /// are taken when the tree has them for the same release.
    static func select(for release: WindowsRelease, in files: [String], source: String) throws -> [VirtioWinDriver] {
        guard let arch = release.virtioWinArch else {
            throw StageError(.unsupportedGuest, file: source,
                             "virtio-win has no drivers for the \(release.arch) architecture (guest: \(release.summary))")
        }
        let osDirectories = release.virtioWinDirectories
        guard !osDirectories.isEmpty else {
            throw StageError(.unsupportedGuest, file: source,
                             "no virtio-win driver directory is known for \(release.summary)")
        }
        guard let storage = driver(directory: storageDriver, name: storageDriver, osDirectories: osDirectories, arch: arch, in: files),
              storage.file(withExtension: "sys") != nil, storage.file(withExtension: "inf") != nil else {
            let looked = osDirectories.map { "\(storageDriver)/\($0)/\(arch)/\(storageDriver).sys and .inf" }.joined(separator: ", ")
            let available = availableDirectories(of: storageDriver, in: files)
            throw StageError(.badInput, file: source,
                             "no virtio storage driver for \(release.summary) in the virtio-win drivers at \(source): looked for \(looked); "
                                 + (available.isEmpty ? "the tree has no \(storageDriver) driver at all"
                                     : "the tree has \(storageDriver) only for \(available.joined(separator: ", "))")
                                 + " (use a virtio-win release that supports this Windows version, or set win_virtio: false to keep SATA)")
        }
        var drivers = [storage]
        for optional in optionalDrivers {
            if let found = driver(directory: optional.directory, name: optional.name, osDirectories: osDirectories, arch: arch, in: files),
               found.file(withExtension: "inf") != nil {
                drivers.append(found)
            }
        }
        return drivers
    }

    /// The files under `<directory>/<os>/<arch>/` for the first os directory that has any,
    /// matching names case-insensitively (ISOs and unpacked trees differ in case).
    static func driver(directory: String, name: String, osDirectories: [String], arch: String, in files: [String]) -> VirtioWinDriver? {
        for os in osDirectories {
            let prefix = "\(directory)/\(os)/\(arch)/".lowercased()
            let matching = files.filter { file in
                let lower = file.lowercased()
                return lower.hasPrefix(prefix) && !lower.dropFirst(prefix.count).contains("/")
            }
            if let first = matching.first {
                let actualDirectory = String(first.prefix(prefix.count - 1))
                return VirtioWinDriver(name: name, directory: actualDirectory, files: matching.sorted())
            }
        }
        return nil
    }

    /// "<os>/<arch>" pairs the tree has a driver for, for error messages.
    static func availableDirectories(of directory: String, in files: [String]) -> [String] {
        let pairs = files.compactMap { file -> String? in
            let parts = file.split(separator: "/").map(String.init)
            guard parts.count == 4, parts[0].lowercased() == directory.lowercased() else { return nil }
            return "\(parts[1])/\(parts[2])"
        }
        return Array(Set(pairs)).sorted()
    }
}
