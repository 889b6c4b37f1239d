import CLinux
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// rename(2) in its three forms. None is retried on EINTR: a rename that reports it may
/// already have happened.
public enum Rename {
    /// Atomically replaces `destination` if it exists.
    public static func replacing(_ source: String, to destination: String) throws(SystemError) {
        try SystemCall.checked("rename", path: source, destination: destination, retryOnInterrupt: false) {
            rename(source, destination)
        }
    }

    /// Renames `source` to `destination` unless `destination` exists (files or directories).
    /// Never copies: across filesystems it fails with EXDEV.
    ///
    /// - Returns: `true` when renamed; `false` when `destination` already exists, in which
    ///   case nothing changed.
    ///
    /// Uses `renameat2(RENAME_NOREPLACE)`. On a filesystem without the flag it falls back to
    /// `link`+`unlink` for files (link refuses an existing name; a crash between the two
    /// leaves both names for one inode) and to `rename` for directories, which cannot replace
    /// a non-empty directory: an empty directory at `destination` is the only thing that
    /// fallback could replace.
    public static func withoutReplacing(_ source: String, to destination: String) throws(SystemError) -> Bool {
        if h2k_rename2(source, destination, H2K_RENAME_NOREPLACE) == 0 { return true }
        let code = Glibc.errno
        if code == EEXIST { return false }
        guard code == EINVAL || code == ENOSYS else {
            throw SystemError(operation: "rename", path: source, destination: destination, errno: code)
        }
        return try withoutReplacingFallback(source, to: destination)
    }

    /// Atomically swaps two existing paths (`renameat2(RENAME_EXCHANGE)`).
    ///
    /// - Returns: `false` when the filesystem or kernel cannot exchange, in which case
    ///   nothing changed.
    public static func exchanging(_ first: String, with second: String) throws(SystemError) -> Bool {
        if h2k_rename2(first, second, H2K_RENAME_EXCHANGE) == 0 { return true }
        let code = Glibc.errno
        if code == EINVAL || code == ENOSYS { return false }
        throw SystemError(operation: "rename-exchange", path: first, destination: second, errno: code)
    }

    private static func withoutReplacingFallback(_ source: String, to destination: String) throws(SystemError) -> Bool {
        var status = stat()
        try SystemCall.checked("stat", path: source) { lstat(source, &status) }
        if (status.st_mode & S_IFMT) == S_IFDIR {
            if rename(source, destination) == 0 { return true }
            let code = Glibc.errno
            if code == EEXIST || code == ENOTEMPTY { return false }
            throw SystemError(operation: "rename", path: source, destination: destination, errno: code)
        }
        if link(source, destination) != 0 {
            let code = Glibc.errno
            if code == EEXIST { return false }
            throw SystemError(operation: "link", path: source, destination: destination, errno: code)
        }
        try SystemCall.checked("unlink", path: source, retryOnInterrupt: false) { unlink(source) }
        return true
    }
}
