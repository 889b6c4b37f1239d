import Glibc
import Logging

/// What one look at a queue name found.
public enum FileSample: Sendable, Equatable {
    case regular(FileObservation)
    case missing
    /// Not a regular file: a symbolic link (never followed: a queue writer could otherwise make
    /// a root daemon read any file on the host), a directory, a FIFO, a device…
    case notRegularFile(kind: String)

    /// The observation the tracker wants: nil unless a regular file was there.
    public var observation: FileObservation? {
        if case .regular(let observation) = self { return observation }
        return nil
    }
}

/// Looks at queue files (`lstat` plus one `/proc` scan for writers) and feeds the looks to a
/// `FileStabilityTracker`, stamped with `clock`.
public struct FileStabilitySampler<C: Clock>: Sendable where C.Duration == Duration, C: Sendable, C.Instant: Sendable {
    public let directory: String
    public let clock: C
    public var writerScanner: OpenWriterScanner
    public var logger: Logger?

    public init(directory: String, clock: C, writerScanner: OpenWriterScanner = OpenWriterScanner(), logger: Logger? = nil) {
        self.directory = directory
        self.clock = clock
        self.writerScanner = writerScanner
        self.logger = logger
    }

    /// One look at each name in the queue directory.
    public func look(at names: [String]) -> [String: FileSample] {
        var samples: [String: FileSample] = [:]
        var identities: [String: FileIdentity] = [:]
        for name in names {
            var status = stat()
            guard lstat(directory + "/" + name, &status) == 0 else {
                samples[name] = .missing
                continue
            }
            if status.st_mode & S_IFMT == S_IFDIR {
                // A folder job (a Hyper-V export) settles as a whole tree.
                let folder = ExportFolderSample.look(directory + "/" + name, status: status)
                samples[name] = .regular(folder.observation)
                for (relative, identity) in folder.files { identities[name + "/" + relative] = identity }
                continue
            }
            guard status.st_mode & S_IFMT == S_IFREG else {
                samples[name] = .notRegularFile(kind: Self.describeType(status.st_mode))
                continue
            }
            let observation = FileObservation(
                device: UInt64(status.st_dev), inode: UInt64(status.st_ino), size: UInt64(status.st_size),
                modificationNanoseconds: Int64(status.st_mtim.tv_sec) * 1_000_000_000 + Int64(status.st_mtim.tv_nsec),
                hasWriter: false)
            samples[name] = .regular(observation)
            identities[name] = FileIdentity(device: observation.device, inode: observation.inode)
        }
        for key in writerScanner.namesOpenForWriting(identities) {
            // A file inside a folder job holds the folder back (queue names have no "/").
            let name = String(key.prefix { $0 != "/" })
            if case .regular(var observation) = samples[name] {
                observation.hasWriter = true
                samples[name] = .regular(observation)
            }
        }
        return samples
    }

    /// Looks at `names` now and returns the tracker's verdict for each. Names that are not
    /// regular files are logged and reported `.gone`.
    public func check(_ names: [String], with tracker: inout FileStabilityTracker<C.Instant>) -> [String: FileStabilityTracker<C.Instant>.Verdict] {
        let samples = look(at: names)
        let now = clock.now
        var verdicts: [String: FileStabilityTracker<C.Instant>.Verdict] = [:]
        for name in names {
            let sample = samples[name] ?? .missing
            if case .notRegularFile(let kind) = sample {
                logger?.warning("\(directory)/\(name): is a \(kind), not a regular file; only regular files are taken from the queue")
            }
            verdicts[name] = tracker.observe(name, sample.observation, at: now)
        }
        return verdicts
    }

    static func describeType(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFLNK: "symbolic link"
        case S_IFDIR: "directory"
        case S_IFIFO: "FIFO"
        case S_IFSOCK: "socket"
        case S_IFCHR: "character device"
        case S_IFBLK: "block device"
        default: "special file"
        }
    }
}

extension FileStabilitySampler where C == ContinuousClock {
    public init(directory: String, writerScanner: OpenWriterScanner = OpenWriterScanner(), logger: Logger? = nil) {
        self.init(directory: directory, clock: ContinuousClock(), writerScanner: writerScanner, logger: logger)
    }
}
