import Glibc
import SystemSupport

/// Lists a directory with `opendir(3)`/`readdir(3)`, without following anything.
enum DirectoryReader {
    struct Entry {
        var name: String
        /// `d_type` (`DT_REG`, `DT_DIR`, `DT_LNK`…; `DT_UNKNOWN` on some filesystems).
        var type: UInt8
    }

    /// The entries of `path` except `.` and `..`; names that are not valid UTF-8 are skipped
    /// (the daemon cannot name them in its journal or logs faithfully).
    static func entries(at path: String) throws(SystemError) -> [Entry] {
        guard let stream = opendir(path) else {
            throw SystemError(operation: "opendir", path: path, errno: errno)
        }
        defer { closedir(stream) }
        var result: [Entry] = []
        while let entry = readdir(stream) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) { tuple in
                tuple.withMemoryRebound(to: CChar.self, capacity: 256) { String(validatingCString: $0) }
            }
            guard let name, name != ".", name != ".." else { continue }
            result.append(Entry(name: name, type: entry.pointee.d_type))
        }
        return result
    }
}

/// Reads a small file (a `/proc` entry) whole; nil if it cannot be read.
func readSmallFile(_ path: String, limit: Int = 64 * 1024) -> [UInt8]? {
    let descriptor = SystemCall.retryingOnInterrupt { open(path, O_RDONLY | O_CLOEXEC) }
    guard descriptor >= 0 else { return nil }
    defer { close(descriptor) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < limit {
        let count = chunk.withUnsafeMutableBytes { buffer in
            SystemCall.retryingOnInterrupt { read(descriptor, buffer.baseAddress, buffer.count) }
        }
        if count < 0 { return nil }
        if count == 0 { break }
        bytes.append(contentsOf: chunk[0..<count])
    }
    return bytes
}

/// Lists the regular files at the top of the queue directory: what `groupJobs` and the
/// start-up and overflow rescans work from.
public enum QueueDirectoryListing {
    /// Names of regular files (not directories, not symbolic links, not devices or FIFOs) at the
    /// top of `directory`, sorted.
    /// - Throws: `SystemError` when the directory cannot be read.
    public static func regularFileNames(in directory: String) throws -> [String] {
        var names: [String] = []
        for entry in try DirectoryReader.entries(at: directory) {
            if entry.type == UInt8(DT_REG) {
                names.append(entry.name)
            } else if entry.type == UInt8(DT_UNKNOWN) {
                var status = stat()
                if lstat(directory + "/" + entry.name, &status) == 0 && status.st_mode & S_IFMT == S_IFREG {
                    names.append(entry.name)
                }
            }
        }
        return names.sorted()
    }
}
