#if canImport(Glibc)
import Glibc
#endif

/// Directories that exist durably.
public enum Directory {
    /// Creates `path` (mode 0755) unless it already is a directory; a new directory is made
    /// durable in its parent. Something else at `path` fails with ENOTDIR.
    public static func ensure(_ path: String) throws(SystemError) {
        if mkdir(path, 0o755) == 0 {
            try FileSync.directory(PathText.parent(of: path))
            return
        }
        let code = Glibc.errno
        var status = stat()
        guard code == EEXIST, stat(path, &status) == 0, status.st_mode & S_IFMT == S_IFDIR else {
            throw SystemError(operation: "mkdir", path: path, errno: code == EEXIST ? ENOTDIR : code)
        }
    }
}
