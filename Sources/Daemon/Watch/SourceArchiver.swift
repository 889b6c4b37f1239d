import Foundation
import Glibc
import SystemSupport

/// A source could not be archived; says which file and why.
public struct SourceArchiveError: Error, CustomStringConvertible, Sendable, Equatable {
    public var path: String
    public var message: String
    public var description: String { "\(path): \(message)" }
}

/// Moves a finished job's source files out of the queue: to `.processed/<YYYY-MM-DD>/` after
/// success, to `.errors/` after failure.
///
/// - Only `rename(2)` within the watch directory's filesystem, never copy and delete, and never
///   over an existing file: a name already taken gets `_2`, `_3`… before its extension; a
///   multi-file job whose names are taken moves whole into a fresh `<primary>_N/` folder, so a
///   VMDK descriptor or an OVF still finds its extents and disks under the names it records.
/// - Durable: the destination and the queue directory are fsynced before it returns.
/// - Idempotent: a member no longer in the queue but found in the destination area (by inode
///   when `identity` is given: rename keeps it; else by name) counts as archived, so a daemon
///   that crashed half-way simply calls it again.
public struct SourceArchiver: Sendable {
    public enum Destination: Sendable, Equatable {
        case processed
        case errors
    }

    /// One file of the job, with the identity the journal recorded for it when known: it tells
    /// the archived file from a new file dropped under the same name meanwhile.
    public struct Member: Sendable, Equatable {
        public var name: String
        public var identity: FileIdentity?
        public init(name: String, identity: FileIdentity? = nil) {
            self.name = name
            self.identity = identity
        }
    }

    public struct ArchivedFile: Sendable, Equatable {
        /// The name it had in the queue.
        public var name: String
        /// Where it is now.
        public var path: String
        /// It had been archived by an earlier call.
        public var wasAlreadyArchived: Bool
    }

    public let watchDirectory: String
    public var timeZone: TimeZone

    public init(watchDirectory: String, timeZone: TimeZone = .current) {
        self.watchDirectory = watchDirectory
        self.timeZone = timeZone
    }

    /// The folder `archive(_:to:at:)` moves into: `.processed/<YYYY-MM-DD>` (local date of `date`) or `.errors`.
    public func destinationDirectory(_ destination: Destination, at date: Date) -> String {
        switch destination {
        case .errors:
            return "\(watchDirectory)/\(QueueEntryFilter.errorsDirectoryName)"
        case .processed:
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = timeZone
            let day = calendar.dateComponents([.year, .month, .day], from: date)
            let stamp = String(format: "%04d-%02d-%02d", day.year ?? 0, day.month ?? 0, day.day ?? 0)
            return "\(watchDirectory)/\(QueueEntryFilter.processedDirectoryName)/\(stamp)"
        }
    }

    /// Archives the files of one job together; the first member is the job's primary file.
    /// Returns where each member is now, in the order given.
    /// - Throws: `SourceArchiveError` for a member neither in the queue nor archived;
    ///   `SystemError` when a rename, mkdir or fsync fails (e.g. `EXDEV` when `.processed`
    ///   is another filesystem: we never fall back to copying).
    @discardableResult
    public func archive(_ members: [Member], to destination: Destination, at date: Date = Date()) throws -> [ArchivedFile] {
        guard let primary = members.first else { return [] }
        let target = destinationDirectory(destination, at: date)
        if destination == .processed {
            try Directory.ensure("\(watchDirectory)/\(QueueEntryFilter.processedDirectoryName)")
        }
        try Directory.ensure(target)

        var results: [String: ArchivedFile] = [:]
        var toMove: [Member] = []
        for member in members {
            if isInQueue(member) {
                toMove.append(member)
            } else if let archivedPath = try findArchived(member, destination: destination, target: target) {
                results[member.name] = ArchivedFile(name: member.name, path: archivedPath, wasAlreadyArchived: true)
            } else {
                throw SourceArchiveError(
                    path: "\(watchDirectory)/\(member.name)",
                    message: "cannot archive: it is no longer in the queue and was not found in \(target)")
            }
        }

        var collided: [Member] = []
        for member in toMove {
            let destinationPath = "\(target)/\(member.name)"
            if try Rename.withoutReplacing("\(watchDirectory)/\(member.name)", to: destinationPath) {
                results[member.name] = ArchivedFile(name: member.name, path: destinationPath, wasAlreadyArchived: false)
            } else {
                collided.append(member)
            }
        }
        var directoriesToSync = [target]
        if !collided.isEmpty {
            if members.count == 1 {
                let path = try moveUnderFreeName(primary.name, into: target)
                results[primary.name] = ArchivedFile(name: primary.name, path: path, wasAlreadyArchived: false)
            } else {
                let folder = try makeFreshFolder(for: primary.name, in: target)
                directoriesToSync.append(folder)
                for member in collided {
                    let path = "\(folder)/\(member.name)"
                    guard try Rename.withoutReplacing("\(watchDirectory)/\(member.name)", to: path) else {
                        throw SystemError(operation: "rename", path: path, errno: EEXIST)
                    }
                    results[member.name] = ArchivedFile(name: member.name, path: path, wasAlreadyArchived: false)
                }
            }
        }
        if !toMove.isEmpty {
            for directory in directoriesToSync { try FileSync.directory(directory) }
            try FileSync.directory(watchDirectory)
        }
        return members.compactMap { results[$0.name] }
    }

    private func isInQueue(_ member: Member) -> Bool {
        var status = stat()
        guard lstat("\(watchDirectory)/\(member.name)", &status) == 0 else { return false }
        guard let identity = member.identity else { return true }
        return UInt64(status.st_dev) == identity.device && UInt64(status.st_ino) == identity.inode
    }

    /// Where an earlier call put `member`: by inode anywhere in the destination area (a later
    /// day's folder after midnight, a collision folder), or by name in `target`.
    private func findArchived(_ member: Member, destination: Destination, target: String) throws -> String? {
        guard let identity = member.identity else {
            var status = stat()
            let path = "\(target)/\(member.name)"
            return lstat(path, &status) == 0 ? path : nil
        }
        var folders = [target]
        if destination == .processed {
            let processed = "\(watchDirectory)/\(QueueEntryFilter.processedDirectoryName)"
            folders += subdirectories(of: processed)
        }
        for folder in Set(folders) {
            for candidate in [folder] + subdirectories(of: folder) {
                for entry in (try? DirectoryReader.entries(at: candidate)) ?? [] {
                    var status = stat()
                    let path = "\(candidate)/\(entry.name)"
                    if lstat(path, &status) == 0, UInt64(status.st_dev) == identity.device,
                       UInt64(status.st_ino) == identity.inode,
                       status.st_mode & S_IFMT == S_IFREG || status.st_mode & S_IFMT == S_IFDIR {  // a folder job (Hyper-V export)
                        return path
                    }
                }
            }
        }
        return nil
    }

    private func subdirectories(of folder: String) -> [String] {
        ((try? DirectoryReader.entries(at: folder)) ?? []).compactMap { entry in
            let path = "\(folder)/\(entry.name)"
            var status = stat()
            guard lstat(path, &status) == 0, status.st_mode & S_IFMT == S_IFDIR else { return nil }
            return path
        }
    }

    /// Moves a single file to `stem_N.ext` for the first free N ≥ 2.
    private func moveUnderFreeName(_ name: String, into target: String) throws -> String {
        let (stem, fileExtension) = QueueEntryFilter.splitExtension(name).map { ($0.stem, "." + $0.fileExtension) } ?? (name, "")
        for number in 2... {
            // A long name is cut so `_N` still fits NAME_MAX.
            let suffix = "_\(number)\(fileExtension)"
            let path = "\(target)/\(PathText.prefix(of: stem, fittingBytes: 255 - suffix.utf8.count))\(suffix)"
            if try Rename.withoutReplacing("\(watchDirectory)/\(name)", to: path) { return path }
        }
        preconditionFailure("unreachable: the sequence of numbers is unbounded")
    }

    /// Creates `<target>/<primary>_N/` for the first N ≥ 2 not taken.
    private func makeFreshFolder(for primary: String, in target: String) throws -> String {
        for number in 2... {
            let suffix = "_\(number)"
            let folder = "\(target)/\(PathText.prefix(of: primary, fittingBytes: 255 - suffix.utf8.count))\(suffix)"
            if mkdir(folder, 0o755) == 0 {
                try FileSync.directory(target)
                return folder
            }
            guard errno == EEXIST else { throw SystemError(operation: "mkdir", path: folder, errno: errno) }
        }
        preconditionFailure("unreachable: the sequence of numbers is unbounded")
    }
}
