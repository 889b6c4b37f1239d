import Foundation
import Stages

/// Carries out the lifecycle's `waitForSpace`: returns once enough space is free, checking
/// every `interval` (free space sends no event; this runs only while a job waits for it).
/// What counts as enough: what the stage estimated it needs, on the filesystem it needs it
/// on; without an estimate (a write hit ENOSPC), twice what was free when it failed and at
/// least 64 MiB. Throws `CancellationError` when the waiting task is cancelled.
struct SpaceWait: Sendable {
    let workDirectory: String
    let outputDirectory: String
    let interval: Duration

    init(configuration: Configuration) {
        workDirectory = configuration.workDir
        outputDirectory = configuration.outputDir
        interval = .seconds(configuration.spaceCheckSeconds)
    }

    func until(_ need: SpaceNeed?) async throws {
        let twiceFree = free(for: need).multipliedReportingOverflow(by: 2)
        let needed = need?.bytes ?? max(64 << 20, twiceFree.overflow ? .max : twiceFree.partialValue)
        repeat {
            try await Task.sleep(for: interval)
        } while free(for: need) < needed
    }

    private func free(for need: SpaceNeed?) -> UInt64 {
        // A need names the job's own directory; should it vanish, the work root's filesystem.
        if let need { return FreeSpace.bytes(at: need.directory) ?? FreeSpace.bytes(at: workDirectory) ?? 0 }
        return [workDirectory, outputDirectory].compactMap(FreeSpace.bytes(at:)).min() ?? 0
    }
}

/// Free bytes for unprivileged writers on the filesystem holding `path`.
enum FreeSpace {
    static func bytes(at path: String) -> UInt64? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        return UInt64(info.f_bavail).multipliedReportingOverflow(by: UInt64(info.f_frsize)).partialValue
    }
}
