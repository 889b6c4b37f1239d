import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Moves a job's finished outputs into `output_dir/<vm>/` so that a reader sees either the
/// complete directory or none of its files, even across a crash or power loss.
///
/// Two steps, because `domain.xml` must name the final disk paths before the disks are
/// published:
///
/// 1. ``reserve(vmName:jobID:)`` claims the first free name among `<vm>`, `<vm>-2`, `<vm>-3`…
///    by renaming (no-replace) a fresh directory holding only the job marker
///    `.hyper2kvm-job` onto it. While the job runs, that name is an empty-looking directory.
/// 2. ``publish(_:into:jobID:)`` hard-links the files (copies them when the work directory is
///    on another filesystem) into a private staging directory `output_dir/.<vm>.<job>.staging`
///    with the marker, fsyncs files and directory, and atomically exchanges it with the
///    reserved directory (`renameat2(RENAME_EXCHANGE)`); then fsyncs `output_dir`.
///
/// Guarantees:
/// - A directory of another job (or made by a person: no marker of this job) is never
///   written to, replaced or removed.
/// - Both steps are idempotent for one job: after a crash at any point, calling them again
///   finishes the work. A directory carrying this job's marker is this job's; a leftover
///   staging directory is rebuilt from scratch. Staging holds links, never the only copy.
/// - The work directory is left as it was; the runner deletes it after the journal
///   records the publish.
public struct OutputPublisher: Sendable {
    /// Name of the marker file that ties a published directory to its job.
    public static let jobMarkerName = ".hyper2kvm-job"

    public var outputDirectory: URL

    public init(outputDirectory: URL) {
        self.outputDirectory = outputDirectory
    }

    /// One file to publish: `source` (complete and fsynced, in the job's work directory)
    /// becomes `<published directory>/<name>`.
    public struct File: Sendable, Equatable {
        public var name: String
        public var source: URL
        public init(name: String, source: URL) {
            self.name = name
            self.source = source
        }
    }

    /// Reserves this job's directory for VM `vmName` and returns it; returns the same
    /// directory when called again by the same job.
    public func reserve(vmName: String, jobID: Int64) throws -> URL {
        let base = Self.directoryName(for: vmName)
        try createOutputDirectory()
        var suffix = 1
        var claim: URL?
        defer { if let claim { try? FileManager.default.removeItem(at: claim) } }
        while suffix < Self.maximumSuffix {
            let candidate = candidateURL(base, suffix)
            if exists(candidate) {
                if isOwned(candidate, by: jobID) {
                    try DurableFile.fsyncDirectory(outputDirectory)
                    return candidate
                }
                suffix += 1
                continue
            }
            let pending = try claim ?? makeMarkedDirectory(outputDirectory.appendingPathComponent(".\(base).\(jobID).claim"),
                                                           jobID: jobID)
            claim = pending
            if try DurableFile.renameNoReplace(from: pending, to: candidate) {
                claim = nil
                try DurableFile.fsyncDirectory(outputDirectory)
                return candidate
            }
            // Another publisher took the name between the check and the rename.
            suffix += 1
        }
        throw StageError(.ioFailed, file: outputDirectory.path,
                         "no free directory name for '\(base)' after \(Self.maximumSuffix - 1) tries")
    }

    /// Publishes `files` into `directory` (reserved by this job with ``reserve(vmName:jobID:)``,
    /// or not existing yet) and returns it.
    ///
    /// - Throws: `StageError(.ioFailed)` when `directory` belongs to another job, or naming
    ///   the file or directory an operation failed on (`.noSpace` when the disk is full);
    ///   `.badInput` for a file name that is not a plain name.
    @discardableResult
    public func publish(_ files: [File], into directory: URL, jobID: Int64) throws -> URL {
        for file in files where !Self.isPlainName(file.name) || file.name == Self.jobMarkerName {
            throw StageError(.badInput, file: file.source.path, "cannot publish as '\(file.name)': not a plain file name")
        }
        let parent = directory.deletingLastPathComponent()
        let staging = parent.appendingPathComponent(".\(directory.lastPathComponent).\(jobID).staging", isDirectory: true)
        // Left only by a crash inside the no-RENAME_EXCHANGE fallback; holds just a marker.
        try removeIfPresent(retiredURL(directory, jobID))

        if exists(directory) {
            guard isOwned(directory, by: jobID) else {
                throw StageError(.ioFailed, file: directory.path,
                                 "belongs to another job or was made by someone else; refusing to publish into it")
            }
            if files.allSatisfy({ exists(directory.appendingPathComponent($0.name)) }) && !files.isEmpty {
                // Published already; only the cleanup may be missing.
                try removeIfPresent(staging)
                try DurableFile.fsyncDirectory(parent)
                return directory
            }
            try buildStaging(staging, files: files, jobID: jobID)
            try exchange(staging, with: directory, parent: parent, jobID: jobID)
            // `staging` now holds the old reservation (just the marker).
            try removeIfPresent(staging)
            try DurableFile.fsyncDirectory(parent)
            return directory
        }

        try buildStaging(staging, files: files, jobID: jobID)
        guard try DurableFile.renameNoReplace(from: staging, to: directory) else {
            throw StageError(.ioFailed, file: directory.path, "appeared while publishing; refusing to replace it")
        }
        try DurableFile.fsyncDirectory(parent)
        return directory
    }

    /// Gives back a reservation of a job that will not publish (it failed for good): removes
    /// `directory` only when it carries this job's marker and nothing else, and the job's
    /// leftover staging directory. Published outputs are never removed.
    public func release(_ directory: URL, jobID: Int64) throws {
        let parent = directory.deletingLastPathComponent()
        try removeIfPresent(parent.appendingPathComponent(".\(directory.lastPathComponent).\(jobID).staging"))
        guard exists(directory), isOwned(directory, by: jobID),
              (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) == [Self.jobMarkerName] else { return }
        try removeIfPresent(directory)
        try DurableFile.fsyncDirectory(parent)
    }

    /// Reserves and publishes in one call, for callers that need no paths in advance.
    @discardableResult
    public func publish(_ files: [File], vmName: String, jobID: Int64) throws -> URL {
        try publish(files, into: reserve(vmName: vmName, jobID: jobID), jobID: jobID)
    }

    /// The directory name for a VM name that came from untrusted metadata: one path
    /// component, not hidden, no control characters, short enough to leave room for
    /// suffixes and the staging decoration within NAME_MAX.
    public static func directoryName(for vmName: String) -> String {
        var name = String(String.UnicodeScalarView(vmName.unicodeScalars.map { scalar in
            (scalar == "/" || scalar.value < 0x20 || scalar.value == 0x7F) ? "_" : scalar
        }))
        if name.hasPrefix(".") { name = "_" + name.dropFirst() }
        while name.utf8.count > 200 { name.removeLast() }
        return name.isEmpty ? "vm" : name
    }

    // MARK: - Steps

    static let maximumSuffix = 10_000

    private func candidateURL(_ base: String, _ suffix: Int) -> URL {
        outputDirectory.appendingPathComponent(suffix == 1 ? base : "\(base)-\(suffix)", isDirectory: true)
    }

    private func retiredURL(_ directory: URL, _ jobID: Int64) -> URL {
        directory.deletingLastPathComponent().appendingPathComponent(".\(directory.lastPathComponent).\(jobID).retired")
    }

    private func makeMarkedDirectory(_ url: URL, jobID: Int64) throws -> URL {
        try removeIfPresent(url)
        guard mkdir(url.path, 0o755) == 0 else { throw DurableFile.failure("mkdir", url, errno) }
        try DurableFile.write(Data(Self.markerText(jobID).utf8), to: url.appendingPathComponent(Self.jobMarkerName))
        try DurableFile.fsyncDirectory(url)
        return url
    }

    private func buildStaging(_ staging: URL, files: [File], jobID: Int64) throws {
        _ = try makeMarkedDirectory(staging, jobID: jobID)
        for file in files {
            let target = staging.appendingPathComponent(file.name)
            try placeFile(file.source, at: target)
            try DurableFile.fsync(target)
        }
        try DurableFile.fsyncDirectory(staging)
    }

    /// Swaps the full staging directory with the reserved one in a single step. Without
    /// RENAME_EXCHANGE support the reservation is moved aside first, which leaves a short
    /// window where the name is free.
    private func exchange(_ staging: URL, with directory: URL, parent: URL, jobID: Int64) throws {
        if try DurableFile.renameExchange(staging, directory) { return }
        let retired = retiredURL(directory, jobID)
        try DurableFile.renameReplacing(from: directory, to: retired)
        guard try DurableFile.renameNoReplace(from: staging, to: directory) else {
            throw StageError(.ioFailed, file: directory.path, "was taken while publishing; refusing to replace it")
        }
        try DurableFile.renameReplacing(from: retired, to: staging)
    }

    /// A hard link costs nothing and shares the already-fsynced data; across filesystems
    /// (or where links are not allowed) the bytes are copied.
    private func placeFile(_ source: URL, at target: URL) throws {
        if link(source.path, target.path) == 0 { return }
        let error = errno
        guard error == EXDEV || error == EPERM || error == EMLINK else {
            throw DurableFile.failure("link", source, error, to: target)
        }
        do {
            try FileManager.default.copyItem(at: source, to: target)
        } catch {
            let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError
            let full = underlying?.domain == NSPOSIXErrorDomain && underlying?.code == Int(ENOSPC)
            throw StageError(full ? .noSpace : .ioFailed, file: source.path, "copy to \(target.path) failed: \(error)")
        }
    }

    private func removeIfPresent(_ url: URL) throws {
        guard exists(url) else { return }
        do {
            try FileManager.default.removeItem(at: url)
        } catch {
            throw StageError(.ioFailed, file: url.path, "cannot remove leftover directory: \(error)")
        }
    }

    private func createOutputDirectory() throws {
        do {
            try FileManager.default.createDirectory(at: outputDirectory, withIntermediateDirectories: true)
        } catch {
            throw StageError(.ioFailed, file: outputDirectory.path, "cannot create the output directory: \(error)")
        }
    }

    private func isOwned(_ directory: URL, by jobID: Int64) -> Bool {
        let marker = directory.appendingPathComponent(Self.jobMarkerName)
        guard let data = try? Data(contentsOf: marker) else { return false }
        return String(decoding: data, as: UTF8.self) == Self.markerText(jobID)
    }

    private func exists(_ url: URL) -> Bool {
        var status = stat()
        return lstat(url.path, &status) == 0
    }

    static func markerText(_ jobID: Int64) -> String { "hyper2kvm job \(jobID)\n" }

    private static func isPlainName(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && !name.contains("/") && !name.contains("\0")
    }
}
