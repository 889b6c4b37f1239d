import Foundation
import Glibc
import Stages

/// A folder in the queue (a Hyper-V export is one) seen as one unit by the stability rule.
///
/// inotify on the queue reports only the folder's own arrival, not the files copied deep
/// inside it, so the folder is sampled as a whole: its observation carries the folder's own
/// device and inode, the total bytes of every regular file in its tree, and the newest mtime
/// of anything in it (a file added, removed or renamed changes its directory's mtime). Every
/// file's identity goes to the writer scan, so a file still open for writing anywhere in the
/// tree holds the whole folder back. Nothing is followed: symbolic links are seen, not entered.
enum ExportFolderSample {
    /// Bounds on the walk: an export holds a few dozen files in three levels.
    static let maximumEntries = 10_000
    static let maximumDepth = 8

    struct Look {
        var observation: FileObservation
        /// Each regular file, by its path relative to the folder.
        var files: [String: FileIdentity]
    }

    static func look(_ path: String, status: stat) -> Look {
        var total: UInt64 = 0
        var newest = nanoseconds(status.st_mtim)
        var files: [String: FileIdentity] = [:]
        var seen = 0
        var pending: [(relative: String, depth: Int)] = [("", 0)]
        while let (relative, depth) = pending.popLast(), seen < maximumEntries {
            let directory = relative.isEmpty ? path : path + "/" + relative
            for entry in (try? DirectoryReader.entries(at: directory)) ?? [] {
                seen += 1
                let child = relative.isEmpty ? entry.name : relative + "/" + entry.name
                var entryStatus = stat()
                guard lstat(path + "/" + child, &entryStatus) == 0 else { continue }
                newest = max(newest, nanoseconds(entryStatus.st_mtim))
                switch entryStatus.st_mode & S_IFMT {
                case S_IFREG:
                    total = total &+ UInt64(max(0, entryStatus.st_size))
                    files[child] = FileIdentity(device: UInt64(entryStatus.st_dev), inode: UInt64(entryStatus.st_ino))
                case S_IFDIR where depth + 1 < maximumDepth:
                    pending.append((child, depth + 1))
                default:
                    break
                }
            }
        }
        let observation = FileObservation(device: UInt64(status.st_dev), inode: UInt64(status.st_ino), size: total,
                                          modificationNanoseconds: newest, hasWriter: false)
        return Look(observation: observation, files: files)
    }

    private static func nanoseconds(_ time: timespec) -> Int64 {
        Int64(time.tv_sec) &* 1_000_000_000 &+ Int64(time.tv_nsec)
    }
}

extension QueueDirectoryListing {
    /// Names of the folders at the top of `directory` that hold a Hyper-V export (not hidden,
    /// not symbolic links), sorted.
    public static func exportFolderNames(in directory: String) throws -> [String] {
        var names: [String] = []
        for entry in try DirectoryReader.entries(at: directory) where !entry.name.hasPrefix(".") {
            var status = stat()
            guard lstat(directory + "/" + entry.name, &status) == 0, status.st_mode & S_IFMT == S_IFDIR else { continue }
            if HyperVExportReader.looksLikeExport(URL(fileURLWithPath: directory + "/" + entry.name)) { names.append(entry.name) }
        }
        return names.sorted()
    }

    /// True when `name` in `directory` is a folder (not a symbolic link to one).
    static func isFolder(_ name: String, in directory: String) -> Bool {
        var status = stat()
        return lstat(directory + "/" + name, &status) == 0 && status.st_mode & S_IFMT == S_IFDIR
    }
}
