import Foundation
import Glibc
import SystemSupport

/// The `<name>.error.json` written beside a failed source in `.errors/`.
///
/// Keys are upstream's (`filename`, `filepath`, `file_size_mb`, `timestamp`, `error`, `phase`,
/// `exception_traceback`, `suggestion`, `system_info`) so existing tooling keeps reading them,
/// plus `job_id`, `stage` and `attempt`. We have no tracebacks: `exception_traceback` carries
/// the job's journal history (one line per transition) or null.
public struct ErrorReport: Sendable, Equatable, Encodable {
    public struct SystemInfo: Sendable, Equatable, Encodable {
        public var hyper2kvmVersion: String
        /// Free space for unprivileged users on the filesystem of the queue, in GiB; nil if unknown.
        public var diskSpaceFreeGB: Double?
        public var kernelRelease: String?

        public init(hyper2kvmVersion: String, diskSpaceFreeGB: Double?, kernelRelease: String?) {
            self.hyper2kvmVersion = hyper2kvmVersion
            self.diskSpaceFreeGB = diskSpaceFreeGB
            self.kernelRelease = kernelRelease
        }

        enum CodingKeys: String, CodingKey {
            case hyper2kvmVersion = "hyper2kvm_version"
            case diskSpaceFreeGB = "disk_space_free_gb"
            case kernelRelease = "kernel_release"
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(hyper2kvmVersion, forKey: .hyper2kvmVersion)
            try container.encode(diskSpaceFreeGB, forKey: .diskSpaceFreeGB)
            try container.encode(kernelRelease, forKey: .kernelRelease)
        }

        /// Reads what it can about this host; `path` selects the filesystem for free space.
        public static func current(version: String, diskSpaceOf path: String) -> SystemInfo {
            var fileSystem = statvfs()
            let freeGB = statvfs(path, &fileSystem) == 0
                ? Double(fileSystem.f_bavail) * Double(fileSystem.f_frsize) / 1_073_741_824 : nil
            var names = utsname()
            var release: String?
            if uname(&names) == 0 {
                var field = names.release
                let capacity = MemoryLayout.size(ofValue: field)
                release = withUnsafeBytes(of: &field) { bytes in
                    String(decoding: bytes.prefix(capacity).prefix { $0 != 0 }, as: UTF8.self)
                }
            }
            return SystemInfo(hyper2kvmVersion: version, diskSpaceFreeGB: freeGB.map(roundedToHundredths),
                              kernelRelease: release)
        }
    }

    public var filename: String
    /// Where the source was in the queue when it failed.
    public var filepath: String
    public var fileSizeMB: Double?
    /// ISO 8601 with offset, wall clock: for people reading the report.
    public var timestamp: String
    public var error: String
    /// Upstream's name for where it failed; our stage name, or `watch`/`archive` outside stages.
    public var phase: String
    public var exceptionTraceback: [String]?
    public var suggestion: String
    public var systemInfo: SystemInfo
    public var jobID: String?
    public var stage: String?
    public var attempt: Int?
    /// A short machine-readable cause where one is known (`poison`: the file crashed the
    /// daemon again and again); null otherwise.
    public var code: String?

    public init(filename: String, filepath: String, fileSizeMB: Double?, timestamp: String, error: String,
                phase: String, exceptionTraceback: [String]?, suggestion: String, systemInfo: SystemInfo,
                jobID: String?, stage: String?, attempt: Int?, code: String? = nil) {
        self.filename = filename
        self.filepath = filepath
        self.fileSizeMB = fileSizeMB
        self.timestamp = timestamp
        self.error = error
        self.phase = phase
        self.exceptionTraceback = exceptionTraceback
        self.suggestion = suggestion
        self.systemInfo = systemInfo
        self.jobID = jobID
        self.stage = stage
        self.attempt = attempt
        self.code = code
    }

    /// Builds a report for a source that failed, reading its size (if it is still at
    /// `sourcePath`), the time and the host facts; picks the suggestion from the message.
    ///
    /// - Parameters:
    ///   - sourcePath: the source's path in the queue (reported as `filepath`).
    ///   - sizeInBytes: the source's size, when the caller knows it (the file may have moved).
    ///   - history: the job's journal rows, oldest first, for `exception_traceback`.
    public static func make(sourcePath: String, sizeInBytes: UInt64? = nil, error: String, stage: String?,
                            jobID: String?, attempt: Int?, history: [String]? = nil,
                            version: String, now: Date = Date(), code: String? = nil) -> ErrorReport {
        var size = sizeInBytes
        if size == nil {
            var status = stat()
            if stat(sourcePath, &status) == 0 { size = UInt64(status.st_size) }
        }
        let directory = PathText.parent(of: sourcePath)
        return ErrorReport(
            filename: PathText.lastComponent(of: sourcePath),
            filepath: sourcePath,
            fileSizeMB: size.map { roundedToHundredths(Double($0) / 1_048_576) },
            timestamp: Timestamp.format(now, style: .local),
            error: error,
            phase: stage ?? "watch",
            exceptionTraceback: history,
            suggestion: FailureSuggestion.forMessage(error),
            systemInfo: .current(version: version, diskSpaceOf: directory),
            jobID: jobID, stage: stage, attempt: attempt, code: code)
    }

    enum CodingKeys: String, CodingKey {
        case filename, filepath, timestamp, error, phase, suggestion, stage, attempt
        case fileSizeMB = "file_size_mb"
        case exceptionTraceback = "exception_traceback"
        case systemInfo = "system_info"
        case jobID = "job_id"
        case code = "error_code"
    }

    /// Written by hand so absent values appear as `null`, as in upstream's reports.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(filename, forKey: .filename)
        try container.encode(filepath, forKey: .filepath)
        try container.encode(fileSizeMB, forKey: .fileSizeMB)
        try container.encode(timestamp, forKey: .timestamp)
        try container.encode(error, forKey: .error)
        try container.encode(phase, forKey: .phase)
        try container.encode(exceptionTraceback, forKey: .exceptionTraceback)
        try container.encode(suggestion, forKey: .suggestion)
        try container.encode(systemInfo, forKey: .systemInfo)
        try container.encode(jobID, forKey: .jobID)
        try container.encode(stage, forKey: .stage)
        try container.encode(attempt, forKey: .attempt)
        try container.encode(code, forKey: .code)
    }
}

private func roundedToHundredths(_ value: Double) -> Double {
    (value * 100).rounded() / 100
}

/// Upstream's keyword-chosen advice for a failure message.
public enum FailureSuggestion {
    /// The advice for `message`: the first rule whose keyword occurs in it (case-insensitive).
    public static func forMessage(_ message: String) -> String {
        let lowered = message.lowercased()
        for (keywords, advice) in rules where keywords.contains(where: lowered.contains) {
            return advice
        }
        return "Check the daemon log (journalctl -u hyper2kvm) for the full history of this job, fix the cause, then drop the file into the queue again."
    }

    static let rules: [([String], String)] = [
        (["poison:"],
         "This file made the daemon crash repeatedly, so it was set aside: do not drop it again as is; keep it and report the daemon log (journalctl -u hyper2kvm) with it."),
        (["no space", "disk full", "enospc", "no-space", "quota"],
         "Free disk space on the output and work filesystems (df -h), then drop the file into the queue again."),
        (["permission", "denied", "eacces", "not permitted", "eperm", "read-only file system"],
         "Check that the daemon's user can read the source and write the output and work directories (ls -l), then retry."),
        (["corrupt", "invalid", "bad magic", "truncated", "checksum", "malformed", "bad-input", "unexpected end"],
         "The file looks damaged or is not a supported image: verify it against the original (size, sha256) and export it again."),
        (["network", "timeout", "timed out", "connection", "unreachable"],
         "A network or timeout problem interrupted the job: check connectivity and the remote storage, then retry."),
        (["memory", "cannot allocate", "enomem", "oom", "out of memory"],
         "The host ran out of memory: lower max_concurrent or raise the service's MemoryMax, then retry."),
    ]
}
