import Foundation
import Journal
import Stages
import SystemSupport

extension DaemonQueue {
    /// The queue's files as jobs: what each OVF, `.vmx` or manifest names, each VMDK's
    /// parent (snapshot chains), read from the files as they are now.
    func currentGrouping() -> QueueJobGrouping {
        let names = (try? QueueDirectoryListing.regularFileNames(in: configuration.watchDir)) ?? []
        let directory = URL(fileURLWithPath: configuration.watchDir)
        return QueueEntryFilter.groupJobs(names: names, parentOf: { name in
            VMDKDescriptor.parentNameHint(of: directory.appendingPathComponent(name))
        }) { name, kind in
            switch kind {
            case .ovf:
                return try OVFDescriptor.load(directory.appendingPathComponent(name)).referencedFiles
            case .vmx:
                return try VMXDirectoryReader.diskFileNames(of: directory.appendingPathComponent(name))
            case .manifest:
                // Disks a manifest names inside the queue belong to its job, not jobs of their own.
                // Only top-level names: `queue/../x` is no queue file to wait for (the reader refuses it).
                let queuePath = directory.standardizedFileURL.path + "/"
                return try ArtifactManifest.load(from: directory.appendingPathComponent(name)).disks
                    .map(\.localPath).filter { $0.hasPrefix(queuePath) }.map { String($0.dropFirst(queuePath.count)) }
                    .filter { !$0.contains("/") && $0 != ".." && $0 != "." }
            default:
                return []
            }
        }
    }
}
