import Daemon
import Foundation
import Stages

/// `/api/v1/overview`: what the status page shows besides the jobs themselves. The
/// configuration summary is a fixed list of fields that hold no secret: a key added later
/// (a webhook URL, an SMTP password) does not appear here unless someone adds it on purpose.
struct Overview: Encodable, Sendable {
    struct Space: Encodable, Sendable {
        let path: String
        let availableBytes: UInt64
        let capacityBytes: UInt64
        enum CodingKeys: String, CodingKey {
            case path
            case availableBytes = "available_bytes"
            case capacityBytes = "capacity_bytes"
        }
    }

    struct Summary: Encodable, Sendable {
        let watchDir: String
        let outputDir: String
        let workDir: String
        let stateDir: String
        let maxConcurrent: Int
        let parallelProcessing: Bool
        let outFormat: String
        let compress: Bool
        let checksum: Bool
        let fixGuest: Bool
        let useV2V: Bool
        let libvirtIntegration: Bool
        let httpListen: String
        let configFiles: [String]

        init(_ c: Configuration) {
            watchDir = c.watchDir
            outputDir = c.outputDir
            workDir = c.workDir
            stateDir = c.stateDir
            maxConcurrent = c.maxConcurrent
            parallelProcessing = c.parallelProcessing
            outFormat = c.conversion.outFormat
            compress = c.conversion.compress
            checksum = c.conversion.checksum
            fixGuest = c.conversion.fixGuest
            useV2V = c.conversion.useV2V
            libvirtIntegration = c.conversion.libvirtIntegration
            httpListen = c.httpListen.description
            configFiles = c.sources
        }

        enum CodingKeys: String, CodingKey {
            case watchDir = "watch_dir", outputDir = "output_dir", workDir = "workdir", stateDir = "state_dir"
            case maxConcurrent = "max_concurrent", parallelProcessing = "parallel_processing", outFormat = "out_format"
            case compress, checksum, fixGuest = "fix_guest", useV2V = "use_v2v", libvirtIntegration = "libvirt_integration"
            case httpListen = "http_listen", configFiles = "config_files"
        }
    }

    let version: String
    let configuration: Summary
    let space: [String: Space]
    let spaceFloorBytes: UInt64
    /// Rate and ETA of running jobs, by job id (as text: JSON keys are strings).
    let estimates: [String: ProgressRates.Estimate]
    let ready: Bool
    let problems: [String]

    enum CodingKeys: String, CodingKey {
        case version, configuration, space, estimates, ready, problems
        case spaceFloorBytes = "space_floor_bytes"
    }

    init(context: DaemonContext, reading: EndpointReading) {
        version = Hyper2KVMVersion.current
        configuration = Summary(context.configuration)
        let paths = ["work": context.configuration.workDir, "output": context.configuration.outputDir]
        var space: [String: Space] = [:]
        for (name, value) in reading.spaces {
            space[name] = Space(path: paths[name] ?? "", availableBytes: value.available, capacityBytes: value.capacity)
        }
        self.space = space
        spaceFloorBytes = SpaceCheck.reserveBytes
        estimates = Dictionary(uniqueKeysWithValues: reading.estimates.map { (String($0.key), $0.value) })
        problems = Readiness.problems(context, spaces: reading.spaces)
        ready = problems.isEmpty
    }
}
