#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// fsync of a directory, so that a file just created in it survives power loss
/// (SQLite syncs the directory for its -wal file, not for the main database file).
enum DirectorySync {
    static func sync(_ path: String) throws {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw JournalError.notDurable(path: path, message: "cannot open directory to fsync it: \(errnoText())")
        }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else {
            throw JournalError.notDurable(path: path, message: "fsync of the directory failed: \(errnoText())")
        }
    }
}
