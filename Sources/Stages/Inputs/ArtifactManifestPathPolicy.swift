import Foundation
import Glibc

/// Which files an Artifact Manifest may name: only files inside the directory the manifest
/// was dropped in (the daemon's queue; for `hyper2kvm convert MANIFEST`, the manifest's own
/// directory) or under one of `manifest_allowed_dirs`. Whoever can drop a manifest into the
/// queue must not be able to have any host file converted and published, nor learn whether
/// a path outside exists, how big it is or what it is.
///
/// So a path is judged before anything about it is reported: a path outside (or one whose
/// place cannot be decided) gets one error, byte for byte the same whether it exists or
/// not; existence, type, size and checksum are looked at only for a path found inside.
///
/// Containment is decided on the real path (symlinks resolved, `..` normalised), then
/// re-checked on the opened descriptor (`O_NOFOLLOW`, its real path read back from
/// `/proc/self/fd`), so a component swapped for a symlink between the two cannot lead out.
public struct ArtifactManifestPathPolicy: Sendable {
    /// Real paths of the allowed directories (ones that do not exist hold nothing and are left out).
    public let roots: [String]

    public init(manifest: URL, allowedDirectories: [String]) {
        let declared = [manifest.deletingLastPathComponent().path] + allowedDirectories
        roots = declared.compactMap(Self.realPath)
    }

    /// A disk file opened after the check; the caller closes it (`close()`).
    public struct OpenedFile {
        public let descriptor: Int32
        public let realPath: String
        public let size: UInt64
        public let device: UInt64
        public let inode: UInt64

        /// A path that reads this very file for as long as the descriptor is open, whatever
        /// happens to `realPath` meanwhile.
        public var descriptorPath: String { "/proc/self/fd/\(descriptor)" }

        public func close() { _ = Glibc.close(descriptor) }
    }

    /// The one error for a path outside: the same text for every such path.
    public static func notAllowed(_ declared: String, field: String, manifestPath: String) -> StageError {
        StageError(.badInput, file: manifestPath,
                   "\(field): '\(declared)' is not allowed (outside the queue and manifest_allowed_dirs)")
    }

    /// Whether `realPath` (already resolved) is one of the roots or below one, and not inside
    /// a hidden directory below a root: the queue's own `.processed/` and `.errors/` hold
    /// other people's sources, which a manifest must not republish (nor probe for).
    public func contains(realPath: String) -> Bool {
        roots.contains { root in
            let prefix = root == "/" ? "/" : root + "/"
            guard realPath == root || realPath.hasPrefix(prefix) else { return false }
            let below = realPath.dropFirst(min(prefix.count, realPath.count)).split(separator: "/").dropLast()
            return !below.contains { $0.hasPrefix(".") }
        }
    }

    /// Opens `declared` for reading if, and only if, it is inside an allowed root and is a
    /// regular file. `field` (`disks[0].local_path`) and `manifestPath` name the problem.
    public func open(_ declared: String, field: String, manifestPath: String) throws -> OpenedFile {
        let notAllowed = Self.notAllowed(declared, field: field, manifestPath: manifestPath)
        guard let resolved = Self.realPath(declared) else {
            let code = errno
            // Unresolvable: saying why is safe only where existence is ours to tell.
            if missingInsideRoot(declared) {
                let problem = code == ENOENT ? "does not exist" : "cannot be read: \(String(cString: strerror(code)))"
                throw StageError(.badInput, file: manifestPath, "\(field): '\(declared)' \(problem)")
            }
            throw notAllowed
        }
        guard contains(realPath: resolved) else { throw notAllowed }

        // O_NONBLOCK: a FIFO in the queue must not hang the open; it is refused below as not a regular file.
        let descriptor = Glibc.open(resolved, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else {
            let code = errno
            // Changed since it was resolved (a link now): judged again, as above.
            guard let again = Self.realPath(declared), contains(realPath: again) else { throw notAllowed }
            throw StageError(.badInput, file: manifestPath, "\(field): '\(declared)' cannot be opened: \(String(cString: strerror(code)))")
        }
        guard let opened = Self.realPath(ofDescriptor: descriptor), contains(realPath: opened) else {
            _ = Glibc.close(descriptor)
            throw notAllowed
        }
        var status = stat()
        guard fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
            _ = Glibc.close(descriptor)
            throw StageError(.badInput, file: manifestPath, "\(field): '\(declared)' is not a regular file")
        }
        // A second name for the file may lie anywhere: it could be a host file linked in.
        guard status.st_nlink <= 1 else {
            _ = Glibc.close(descriptor)
            throw StageError(.badInput, file: manifestPath,
                             "\(field): '\(declared)' has \(status.st_nlink) hard links; a file linked from elsewhere is refused (copy it instead)")
        }
        // Reads block again: the descriptor is read through /proc/self/fd by ordinary code.
        let flags = fcntl(descriptor, F_GETFL)
        if flags >= 0 { _ = fcntl(descriptor, F_SETFL, flags & ~O_NONBLOCK) }
        return OpenedFile(descriptor: descriptor, realPath: opened, size: UInt64(max(0, status.st_size)),
                          device: UInt64(status.st_dev), inode: UInt64(status.st_ino))
    }

    /// True when `declared` does not exist and would be inside a root if it did: its nearest
    /// existing ancestor resolves inside, nothing on the way exists as a (dangling) link, and
    /// the missing rest has no `..` that could lead back out.
    func missingInsideRoot(_ declared: String) -> Bool {
        var missing: [Substring] = []
        var candidate = declared
        while true {
            var status = stat()
            if lstat(candidate, &status) == 0 {
                // It exists but does not resolve: a dangling or looping link, which may point anywhere.
                guard let real = Self.realPath(candidate) else { return false }
                return contains(realPath: real) && !missing.contains("..")
            }
            let parent = (candidate as NSString).deletingLastPathComponent
            guard parent != candidate, !parent.isEmpty else { return false }
            missing.append(contentsOf: (candidate as NSString).lastPathComponent.split(separator: "/"))
            candidate = parent
        }
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = Glibc.realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// The path the kernel holds for an open descriptor; nil if it cannot be read or the
    /// file was deleted meanwhile (" (deleted)").
    static func realPath(ofDescriptor descriptor: Int32) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/fd/\(descriptor)", &buffer, buffer.count - 1)
        guard count > 0, count < buffer.count else { return nil }
        let path = String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard path.hasPrefix("/"), !path.hasSuffix(" (deleted)") else { return nil }
        return path
    }
}
