import CLinux
import Foundation
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

/// One regular file of an untrusted image, opened once, read-only, and held open for as long
/// as qemu may read it.
///
/// qemu is never given the name we found: it is given `/proc/<our pid>/fd/<n>`, a link the
/// kernel resolves to this open file whatever happens to the name afterwards. So a sibling
/// checked as a regular file cannot be swapped for a symlink to a host file before qemu opens
/// it, and a name qemu would read as a protocol (`nbd:…`, `json:…`) is never handed to it.
/// Opening uses `O_NOFOLLOW` (a symlink is refused, not followed) and `O_NONBLOCK` (a FIFO or
/// device is refused by `fstat`, instead of blocking the open until a writer appears).
public final class PinnedFile: Sendable {
    /// The name the file was found under, for error messages only.
    public let path: String
    public let descriptor: Int32
    public let device: UInt64
    public let inode: UInt64
    public let size: UInt64

    private init(path: String, descriptor: Int32, status: stat) {
        self.path = path
        self.descriptor = descriptor
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
        size = UInt64(max(0, status.st_size))
    }

    deinit { close(descriptor) }

    /// The name qemu gets: valid in any process of ours (same user) while this object lives.
    public var procPath: String { "/proc/\(getpid())/fd/\(descriptor)" }

    /// The same file, for our own readers (`ByteRangeReader`), without resolving `path` again.
    var selfPath: String { "/proc/self/fd/\(descriptor)" }

    /// Opens `path` (a symlink in its last component is refused). `role` words the errors:
    /// "source", "extent 'x-flat.vmdk' of y.vmdk", …
    public static func open(_ path: String, role: String = "source") throws -> PinnedFile {
        try open(at: AT_FDCWD, name: path, shownAs: path, role: role)
    }

    /// Opens a plain name inside an already opened directory, so nothing between the check of
    /// the name and the open can redirect it.
    static func open(named name: String, in directory: PinnedDirectory, referrer: String, role: String) throws -> PinnedFile {
        guard PlainFileName.isPlain(name) else {
            throw StageError(.badInput, file: referrer,
                             "\(role) \(name.debugDescription) is not a plain file name in the same directory (paths, '..' and absolute names are refused)")
        }
        // qemu reads a name with a colon before any slash as `protocol:rest` (nbd:, json:,
        // file:…). We would open the plain file, but such a name in an image is a lure.
        guard !name.contains(":") else {
            throw StageError(.badInput, file: referrer,
                             "\(role) \(name.debugDescription) is a name qemu reads as a protocol (a colon); refused")
        }
        return try open(at: directory.descriptor, name: name, shownAs: directory.path + "/" + name,
                        role: "\(role) \(name.debugDescription) of \(URL(fileURLWithPath: referrer).lastPathComponent)",
                        referrer: referrer)
    }

    private static func open(at directory: Int32, name: String, shownAs path: String, role: String,
                             referrer: String? = nil) throws -> PinnedFile {
        let blame = referrer ?? path
        let descriptor = openat(directory, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard descriptor >= 0 else {
            let reason = errno == ELOOP ? "is a symbolic link; only regular files are accepted"
                : errno == ENOENT ? "is missing" : "cannot be opened: \(String(cString: strerror(errno)))"
            throw StageError(.badInput, file: blame, "\(role) \(reason)")
        }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw StageError(.ioFailed, file: path, "cannot stat the \(role): \(reason)")
        }
        guard status.st_mode & S_IFMT == S_IFREG else {
            close(descriptor)
            throw StageError(.badInput, file: blame, "\(role) is \(FileKind.describe(status.st_mode)); only regular files are accepted")
        }
        // A hard link is a second name for a file that may live anywhere on the filesystem,
        // a host file included (where fs.protected_hardlinks is off, or for files the dropper
        // can write): O_NOFOLLOW and the plain-name rule cannot tell it apart. Refused.
        guard status.st_nlink <= 1 else {
            close(descriptor)
            throw StageError(.badInput, file: blame,
                             "\(role) has \(status.st_nlink) hard links; a file linked from elsewhere is refused (copy it into the queue instead)")
        }
        // Regular files ignore O_NONBLOCK, but clear it so nothing downstream is surprised.
        let flags = fcntl(descriptor, F_GETFL)
        if flags >= 0 { _ = fcntl(descriptor, F_SETFL, flags & ~O_NONBLOCK) }
        return PinnedFile(path: path, descriptor: descriptor, status: status)
    }

    /// A reader over this open file (or a byte range of it).
    func reader(offset: UInt64 = 0, length: UInt64? = nil) throws -> ByteRangeReader {
        let reader = try ByteRangeReader(path: selfPath, offset: offset, length: length)
        // Errors name the file as the operator knows it, not /proc/self/fd/N.
        reader.path = path
        return reader
    }

    /// True when `other` is the same file (device and inode).
    func isSameFile(as other: PinnedFile) -> Bool { device == other.device && inode == other.inode }
}

/// The directory an untrusted image lives in, opened once: its siblings (extents, parents,
/// backing files) are opened relative to it by plain name.
final class PinnedDirectory: Sendable {
    let path: String
    let descriptor: Int32

    init(containing file: String) throws {
        let path = URL(fileURLWithPath: file).deletingLastPathComponent().path
        let descriptor = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw StageError(.ioFailed, file: path, "cannot open the directory: \(String(cString: strerror(errno)))")
        }
        self.path = path
        self.descriptor = descriptor
    }

    /// Takes over an open directory descriptor (see `init(root:components:referrer:)`).
    init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }
}

/// Descriptor text we write ourselves, held in an anonymous memory file so that qemu reads
/// exactly what we validated and no name of ours can be swapped either.
final class PinnedText: Sendable {
    let descriptor: Int32

    init(_ text: String, name: String) throws {
        let descriptor = h2k_memfd_create(name)
        guard descriptor >= 0 else {
            throw StageError(.ioFailed, file: name, "cannot create an in-memory file: \(String(cString: strerror(errno)))")
        }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let count = SystemCall.retryingOnInterrupt {
                bytes[written...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            }
            if count < 0 {
                let reason = String(cString: strerror(errno))
                close(descriptor)
                throw StageError(.ioFailed, file: name, "cannot write an in-memory file: \(reason)")
            }
            written += count
        }
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    var procPath: String { "/proc/\(getpid())/fd/\(descriptor)" }
}

/// Words for a file type, in errors.
enum FileKind {
    static func describe(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: "a FIFO (named pipe)"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFDIR: "a directory"
        case S_IFSOCK: "a socket"
        case S_IFLNK: "a symbolic link"
        default: "not a regular file"
        }
    }
}
