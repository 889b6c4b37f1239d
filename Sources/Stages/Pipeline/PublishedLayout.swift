import Foundation

/// Names of a job's files once published in `output_dir/<vm>/`: the boot disk is
/// `<vm>.<format>`, other disks `<vm>-<disk id>.<format>`.
public struct PublishedLayout: Sendable {
    public let vmName: String
    public let directory: URL
    public let format: String
    let bootDiskID: String?

    public init(vm: VMDescription, options: ConversionOptions, directory: URL) {
        self.vmName = options.vmName ?? vm.name
        self.directory = directory
        self.format = options.outFormat
        self.bootDiskID = vm.disksInBootOrder.first?.id
    }

    public func diskFileName(diskID: String) -> String {
        let base = OutputPublisher.directoryName(for: vmName)
        return diskID == bootDiskID ? "\(base).\(format)" : "\(base)-\(diskID).\(format)"
    }

    public func diskPath(diskID: String) -> URL {
        directory.appendingPathComponent(diskFileName(diskID: diskID))
    }
}

/// Where this job will publish, chosen by the emit stage (domain.xml must name the final
/// disk paths) and recorded so that a rerun of publish uses the same place.
public struct PublicationTarget: Codable, Sendable, Equatable {
    public var directory: String
    public init(directory: String) { self.directory = directory }
    public static let fileName = "publish-target.json"
}
