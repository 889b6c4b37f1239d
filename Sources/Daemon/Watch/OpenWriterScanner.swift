import Glibc

/// `st_dev` and `st_ino` of a file: which file a name or a descriptor points at.
public struct FileIdentity: Sendable, Hashable {
    public var device: UInt64
    public var inode: UInt64
    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }
}

/// Finds which queue files some process still holds open for writing, from `/proc`.
///
/// For every process it walks `/proc/<pid>/fd/*`: a link whose last path component is one of
/// the queue names is `stat`ed (which follows the descriptor to its file, robust to bind
/// mounts and to renames after open) and, when it is one of the files, its
/// `/proc/<pid>/fdinfo/<fd>` `flags:` are checked for `O_WRONLY` or `O_RDWR`.
///
/// - Important: Processes whose `/proc/<pid>/fd` we may not read (another user's, when the
///   daemon is not root; processes in other PID namespaces; writers on other hosts of a
///   network filesystem) are invisible. For them only the quiet period of
///   `FileStabilityTracker` applies, so `file_stable_seconds` must outlast their longest stall.
public struct OpenWriterScanner: Sendable {
    public var procRoot: String

    public init(procRoot: String = "/proc") {
        self.procRoot = procRoot
    }

    /// Of `files` (queue name → identity), the names that an inspectable process holds open
    /// for writing. One pass over `/proc` serves all of them.
    public func namesOpenForWriting(_ files: [String: FileIdentity]) -> Set<String> {
        guard !files.isEmpty, let processes = try? DirectoryReader.entries(at: procRoot) else { return [] }
        var namesByIdentity: [FileIdentity: String] = [:]
        for (name, identity) in files { namesByIdentity[identity] = name }
        let watchedNames = Set(files.keys)
        var found: Set<String> = []
        for process in processes where process.name.allSatisfy({ $0.isASCII && $0.isNumber }) {
            let fdDirectory = "\(procRoot)/\(process.name)/fd"
            // EACCES / ENOENT (exited meanwhile): nothing we can learn about this process.
            guard let descriptors = try? DirectoryReader.entries(at: fdDirectory) else { continue }
            for descriptor in descriptors {
                let link = "\(fdDirectory)/\(descriptor.name)"
                guard let target = readLink(link), target.hasPrefix("/"),
                      let lastComponent = target.split(separator: "/").last,
                      watchedNames.contains(String(lastComponent))
                else { continue }
                var status = stat()
                guard stat(link, &status) == 0 else { continue }
                let identity = FileIdentity(device: UInt64(status.st_dev), inode: UInt64(status.st_ino))
                guard let name = namesByIdentity[identity], !found.contains(name) else { continue }
                if isOpenForWriting(fdinfo: "\(procRoot)/\(process.name)/fdinfo/\(descriptor.name)") {
                    found.insert(name)
                }
            }
        }
        return found
    }

    private func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink(path, &buffer, buffer.count - 1)
        guard length > 0 else { return nil }
        return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `flags:` in fdinfo is octal `open(2)` flags; the access mode is their low two bits.
    private func isOpenForWriting(fdinfo path: String) -> Bool {
        guard let bytes = readSmallFile(path) else { return false }
        let text = String(decoding: bytes, as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix("flags:") {
            let digits = String(line.dropFirst("flags:".count).filter { !$0.isWhitespace })
            guard let flags = Int32(digits, radix: 8) else { return false }
            let accessMode = flags & O_ACCMODE
            return accessMode == O_WRONLY || accessMode == O_RDWR
        }
        return false
    }
}
