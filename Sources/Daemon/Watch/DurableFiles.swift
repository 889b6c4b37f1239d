import Foundation
import Glibc
import Stages

/// File operations that survive power loss once they return: every new name is followed by
/// an `fsync` of the directory holding it (the Python tool renamed and wrote with no fsync
/// at all).
enum DurableFiles {
    static func fsyncDirectory(_ path: String) throws(WatchIOError) {
        let descriptor = retryingInterrupted { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard descriptor >= 0 else { throw WatchIOError(path: path, operation: "open", errno: errno) }
        defer { close(descriptor) }
        guard retryingInterrupted({ fsync(descriptor) }) == 0 else {
            throw WatchIOError(path: path, operation: "fsync", errno: errno)
        }
    }

    /// Creates `path` (mode 0755) unless it already is a directory; a new directory is made
    /// durable in its parent.
    static func ensureDirectory(_ path: String) throws(WatchIOError) {
        if mkdir(path, 0o755) == 0 {
            try fsyncDirectory(parent(of: path))
            return
        }
        let code = errno
        var status = stat()
        guard code == EEXIST, stat(path, &status) == 0, status.st_mode & S_IFMT == S_IFDIR else {
            throw WatchIOError(path: path, operation: "mkdir", errno: code == EEXIST ? ENOTDIR : code)
        }
    }

    /// Replaces `path` with `bytes` atomically: a hidden temporary beside it, written, fsynced,
    /// renamed over `path`, then the directory fsynced. Readers see the old or the new file whole.
    static func writeAtomically(_ bytes: [UInt8], to path: String) throws(WatchIOError) {
        let directory = parent(of: path)
        // The name is cut so the temporary fits NAME_MAX even beside a 255-byte final name.
        let stem = prefix(of: lastComponent(of: path), fittingBytes: 200)
        let temporary = "\(directory)/.\(stem).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let descriptor = retryingInterrupted { open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) }
        guard descriptor >= 0 else { throw WatchIOError(path: temporary, operation: "open", errno: errno) }
        var written = 0
        var failure: WatchIOError?
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { buffer in
                let remaining = UnsafeRawBufferPointer(rebasing: buffer[written...])
                return retryingInterrupted { write(descriptor, remaining.baseAddress, remaining.count) }
            }
            if count < 0 {
                failure = WatchIOError(path: temporary, operation: "write", errno: errno)
                break
            }
            written += count
        }
        if failure == nil && retryingInterrupted({ fsync(descriptor) }) != 0 {
            failure = WatchIOError(path: temporary, operation: "fsync", errno: errno)
        }
        close(descriptor)
        if failure == nil && rename(temporary, path) != 0 {
            failure = WatchIOError(path: path, operation: "rename", errno: errno)
        }
        if let failure {
            unlink(temporary)
            throw failure
        }
        try fsyncDirectory(directory)
    }

    /// Renames `source` to `destination` only if `destination` does not exist; false when it
    /// does. Never copies: across filesystems it fails with `EXDEV`.
    static func renameWithoutReplacing(_ source: String, to destination: String) throws(WatchIOError) -> Bool {
        if let renameat2 = renameat2Function {
            if renameat2(AT_FDCWD, source, AT_FDCWD, destination, renameNoReplace) == 0 { return true }
            let code = errno
            if code == EEXIST { return false }
            // Filesystems without RENAME_NOREPLACE support say EINVAL; fall back to link+unlink.
            guard code == EINVAL || code == ENOSYS else {
                throw WatchIOError(path: source, operation: "rename to \(destination)", errno: code)
            }
        }
        // link(2) also refuses to replace. A crash between the two calls leaves both names for
        // one inode, which `SourceArchiver` recognises as already archived.
        if link(source, destination) != 0 {
            let code = errno
            if code == EEXIST { return false }
            throw WatchIOError(path: source, operation: "link to \(destination)", errno: code)
        }
        guard unlink(source) == 0 else { throw WatchIOError(path: source, operation: "unlink", errno: errno) }
        return true
    }

    private typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32
    /// `RENAME_NOREPLACE` from <stdio.h>, which Swift's Glibc module hides behind _GNU_SOURCE.
    private static let renameNoReplace: UInt32 = 1
    /// glibc ≥ 2.28 exports `renameat2`, but Swift's Glibc module does not declare it.
    private static let renameat2Function: RenameAt2? = {
        guard let symbol = dlsym(nil, "renameat2") else { return nil }
        return unsafeBitCast(symbol, to: RenameAt2.self)
    }()

    /// The name of a file that accompanies `name` (`<name><suffix>`, e.g. its `.error.json`),
    /// or, when that exceeds NAME_MAX, the longest prefix of `name` that fits with
    /// `~<16 hex digits of the name's SHA-256>` before the suffix: still sorted beside the
    /// file, and unique per name.
    static func companionName(of name: String, suffix: String) -> String {
        let maximumNameBytes = 255
        guard name.utf8.count + suffix.utf8.count > maximumNameBytes else { return name + suffix }
        let digest = String(sha256Hex(name).prefix(16))
        let budget = maximumNameBytes - suffix.utf8.count - 1 - digest.utf8.count
        return prefix(of: name, fittingBytes: budget) + "~" + digest + suffix
    }

    static func sha256Hex(_ text: String) -> String {
        guard let context = try? SHA256Context() else {
            // OpenSSL unavailable: FNV-1a still tells names apart.
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
            let digits = String(hash, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }
        context.update(Data(text.utf8))
        return context.finalize()
    }

    /// The longest prefix of `text` that is at most `bytes` UTF-8 bytes and ends on a character boundary.
    static func prefix(of text: String, fittingBytes bytes: Int) -> String {
        var result = ""
        var used = 0
        for character in text {
            let size = character.utf8.count
            guard used + size <= bytes else { break }
            result.append(character)
            used += size
        }
        return result
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    static func lastComponent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }
}
