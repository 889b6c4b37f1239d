import Foundation
import Stages

/// Folders in the queue: a Hyper-V export (a folder holding `Virtual Hard Disks/`) is one job,
/// taken once its whole tree has settled (see `ExportFolderSample`). Any other folder is left
/// where it is: the queue never took folders before, and an operator's own folder is no input.
///
/// A folder that is no export (yet) stays watched at the stability cadence: a copy into the
/// queue creates the folder first and fills it afterwards, and inotify on the queue reports
/// nothing of what happens inside it.
extension DaemonQueue {
    func intakeFolder(_ name: String) {
        let folder = URL(fileURLWithPath: configuration.watchDir).appendingPathComponent(name)
        guard HyperVExportReader.looksLikeExport(folder) else {
            logger.debug("\(name)/ is a folder but not a Hyper-V export (no 'Virtual Hard Disks' folder in it, yet); left alone")
            tracker.noteArrival(name, .discovered, at: .now)
            wakeStabilityChecks()
            return
        }
        intake(name, members: [name])
    }
}
