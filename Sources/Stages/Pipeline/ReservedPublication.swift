import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Two-step publication: the emit stage reserves `output_dir/<vm>[-N]/` (domain.xml must
/// name the final disk paths before anything is published), the publish stage later
/// fills it in one atomic rename.
///
/// A reservation is an empty directory plus a sibling marker `.<dir>.reserved-job-<id>`
/// that says whose it is; both survive a crash, so a rerun finds its own reservation.
/// Publishing renames a complete staging directory onto the empty reserved one
/// (rename(2) replaces an empty directory atomically); a reserved directory that already
/// carries this job's marker was published before a crash, which makes the step idempotent.
public struct ReservedPublication: Sendable {
    public let outputDirectory: URL
    public let jobID: Int64

    public init(outputDirectory: URL, jobID: Int64) {
        self.outputDirectory = outputDirectory
        self.jobID = jobID
    }

    /// The directory this job will publish into, reserved now (or found reserved earlier).
    public func reserve(vmName: String) throws -> URL {
        try createDirectory(outputDirectory)
        let base = OutputPublisher.directoryName(for: vmName)
        for suffix in 1..<10_000 {
            let name = suffix == 1 ? base : "\(base)-\(suffix)"
            let candidate = outputDirectory.appendingPathComponent(name, isDirectory: true)
            let marker = reservationMarker(for: name)
            if exists(marker) { return candidate }
            if exists(candidate) { continue }
            let fd = open(marker.path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o644)
            if fd < 0 {
                if errno == EEXIST { continue }
                throw DurableFile.failure("create", marker, errno)
            }
            close(fd)
            guard mkdir(candidate.path, 0o755) == 0 else {
                let error = errno
                unlink(marker.path)
                if error == EEXIST { continue }
                throw DurableFile.failure("mkdir", candidate, error)
            }
            try DurableFile.fsyncDirectory(outputDirectory)
            return candidate
        }
        throw StageError(.ioFailed, file: outputDirectory.path, "no free directory name for '\(base)'")
    }

    /// Fills the reserved `directory` with `files` atomically; returns it.
    public func publish(_ files: [OutputPublisher.File], into directory: URL) throws -> URL {
        let name = directory.lastPathComponent
        let jobMarker = directory.appendingPathComponent(OutputPublisher.jobMarkerName)
        if let text = try? String(contentsOf: jobMarker, encoding: .utf8), text == OutputPublisher.markerText(jobID) {
            try finish(name)  // published before a crash
            return directory
        }
        guard exists(reservationMarker(for: name)) else {
            throw StageError(.ioFailed, file: directory.path, "not reserved by job \(jobID); refusing to publish into it")
        }
        let staging = outputDirectory.appendingPathComponent(".\(name).\(jobID).staging", isDirectory: true)
        try? FileManager.default.removeItem(at: staging)
        try createDirectory(staging)
        for file in files {
            let target = staging.appendingPathComponent(file.name)
            if link(file.source.path, target.path) != 0 {
                let error = errno
                guard error == EXDEV || error == EPERM || error == EMLINK else {
                    throw DurableFile.failure("link", file.source, error, to: target)
                }
                do {
                    try FileManager.default.copyItem(at: file.source, to: target)
                } catch {
                    throw StageError(.ioFailed, file: file.source.path, "copy to \(target.path) failed: \(error.localizedDescription)")
                }
            }
            try DurableFile.fsync(target)
        }
        try DurableFile.write(Data(OutputPublisher.markerText(jobID).utf8), to: staging.appendingPathComponent(OutputPublisher.jobMarkerName))
        try DurableFile.fsyncDirectory(staging)
        if !exists(directory) { try createDirectory(directory) }
        guard rename(staging.path, directory.path) == 0 else {
            let error = errno
            if error == ENOTEMPTY || error == EEXIST {
                throw StageError(.ioFailed, file: directory.path, "the reserved output directory is no longer empty; something else wrote into it")
            }
            throw DurableFile.failure("rename", staging, error, to: directory)
        }
        try finish(name)
        return directory
    }

    private func finish(_ name: String) throws {
        unlink(reservationMarker(for: name).path)
        try DurableFile.fsyncDirectory(outputDirectory)
    }

    private func reservationMarker(for name: String) -> URL {
        outputDirectory.appendingPathComponent(".\(name).reserved-job-\(jobID)")
    }

    private func exists(_ url: URL) -> Bool {
        var status = stat()
        return lstat(url.path, &status) == 0
    }

    private func createDirectory(_ url: URL) throws {
        do {
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        } catch {
            throw StageError(.ioFailed, file: url.path, "cannot create directory: \(error.localizedDescription)")
        }
    }
}
