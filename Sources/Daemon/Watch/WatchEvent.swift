/// One change in the top level of the watched queue directory, as inotify reported it.
public struct WatchEvent: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        /// A file was created (`IN_CREATE`); its content may still be arriving.
        case created
        /// A file's content changed (`IN_MODIFY`). Repeats within one read are collapsed.
        case modified
        /// A file opened for writing was closed (`IN_CLOSE_WRITE`).
        case closedAfterWrite
        /// A file was renamed into the directory (`IN_MOVED_TO`).
        case movedIn
        /// A file was renamed out of the directory (`IN_MOVED_FROM`).
        case movedOut
        /// A file was deleted (`IN_DELETE`).
        case deleted
        /// The kernel queue overflowed and events were lost (`IN_Q_OVERFLOW`): rescan the
        /// whole directory. `name` is empty.
        case overflow
        /// The watched directory itself was deleted, moved or unmounted (`IN_DELETE_SELF`,
        /// `IN_MOVE_SELF`, `IN_UNMOUNT`, `IN_IGNORED`). `name` is empty; the stream ends after it.
        case directoryGone
    }

    /// The entry's name inside the watched directory (no path), empty for directory-wide kinds.
    public var name: String
    public var kind: Kind
    /// The entry is a directory (`IN_ISDIR`); the queue ignores directories.
    public var isDirectory: Bool

    public init(name: String, kind: Kind, isDirectory: Bool = false) {
        self.name = name
        self.kind = kind
        self.isDirectory = isDirectory
    }

    public var description: String {
        isDirectory ? "\(kind.rawValue) \(name)/" : "\(kind.rawValue) \(name)"
    }
}
