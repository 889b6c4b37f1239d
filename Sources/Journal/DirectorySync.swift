import SystemSupport

/// fsync of a directory, so that a file just created in it survives power loss
/// (SQLite syncs the directory for its -wal file, not for the main database file).
/// Failures become the journal's `notDurable` error.
enum DirectorySync {
    static func sync(_ path: String) throws {
        do {
            try FileSync.directory(path)
        } catch {
            let message = error.operation == "open"
                ? "cannot open directory to fsync it: \(error.reason)"
                : "fsync of the directory failed: \(error.reason)"
            throw JournalError.notDurable(path: path, message: message)
        }
    }
}
