import Foundation
import Stages

/// The effective configuration: every key of the seed documents and of the earlier
/// implementation that hyper2kvm understands, with its type and default.
/// Built only by `ConfigurationLoader`, which rejects unknown keys and wrong types.
public struct Configuration: Sendable, Equatable {
    public enum Command: String, Sendable, CaseIterable {
        case daemon, convert, local, ova, ovf, vhd, raw, ami
    }

    public struct RetryPolicy: Sendable, Equatable {
        public var enabled = true
        public var maxRetries = 3
        public var retryDelaySeconds = 300.0
        public var backoffMultiplier = 2.0
    }

    public var command: Command?
    /// One-shot input (`input:` or the upstream per-command keys `vmdk:`, `ova:`, …).
    public var input: String?

    public var watchDir: String
    public var outputDir: String
    public var workDir: String
    public var stateDir: String

    public var conversion = ConversionOptions()

    public var maxConcurrent = 1
    public var parallelProcessing = false
    /// Disks of one job copied at once when `parallelProcessing` is on.
    public var parallelDiskCopies = 2
    public var fileStableSeconds = 5.0
    public var archiveProcessed = true
    public var enableDeduplication = true
    public var retryPolicy = RetryPolicy()
    public var shutdownGraceSeconds = 60.0
    /// How often a job waiting for space checks whether it has returned.
    public var spaceCheckSeconds = 30.0
    /// The `notifications` mapping.
    public var notifications = NotificationSettings()
    /// A running stage without progress for this long is stalled.
    public var stalledAfterSeconds = ConfigurationKeys.stalledAfterSeconds

    /// The HTTP endpoint (`http_listen`).
    public var httpListen = HTTPListen.default

    public var logFile: String?
    public var verbose = 1

    /// Files the configuration was read from, in order (later ones win).
    public var sources: [String] = []

    /// Defaults put queue, output, work and state under one directory.
    public init(baseDirectory: String = Configuration.defaultBaseDirectory) {
        watchDir = baseDirectory + "/queue"
        outputDir = baseDirectory + "/output"
        workDir = baseDirectory + "/work"
        stateDir = baseDirectory + "/state"
        if let drivers = ProcessInfo.processInfo.environment["VIRTIO_WIN"], !drivers.isEmpty {
            conversion.virtioWin = drivers
        }
    }

    /// `HYPER2KVM_HOME`, else /var/lib/hyper2kvm (the systemd StateDirectory).
    public static var defaultBaseDirectory: String {
        ProcessInfo.processInfo.environment["HYPER2KVM_HOME"] ?? "/var/lib/hyper2kvm"
    }
}
