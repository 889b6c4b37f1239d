import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where daemon instances keep their configuration and data, mirroring the systemd units:
/// `hyper2kvm.service` runs `hyper2kvm daemon --instance hyper2kvm` with
/// `HYPER2KVM_HOME=<data>`; `hyper2kvm@NAME.service` runs `--instance NAME` with
/// `HYPER2KVM_HOME=<data>/NAME`. The configuration file names are the ones the product
/// documents use: `hyper2kvm.conf` or `hyper2kvm.yaml` for the default instance;
/// `NAME.yaml`, `hyper2kvm-NAME.conf` or `NAME.conf` for instance NAME.
public struct InstanceLayout: Sendable, Equatable {
    /// The default instance's name (hyper2kvm.service).
    public static let defaultInstanceName = "hyper2kvm"

    public var configDirectory: String
    public var dataDirectory: String

    public init(configDirectory: String = "/etc/hyper2kvm", dataDirectory: String = "/var/lib/hyper2kvm") {
        self.configDirectory = configDirectory
        self.dataDirectory = dataDirectory
    }

    /// `HYPER2KVM_CONFIG_DIR` (default /etc/hyper2kvm) and `HYPER2KVM_HOME` (default
    /// /var/lib/hyper2kvm): the same variables the units and the daemon read.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> InstanceLayout {
        InstanceLayout(configDirectory: environment["HYPER2KVM_CONFIG_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/etc/hyper2kvm",
                       dataDirectory: environment["HYPER2KVM_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? "/var/lib/hyper2kvm")
    }

    /// The file names instance `name` may be configured in, in the order the documents give them.
    public static func configFileNames(for name: String) -> [String] {
        name == defaultInstanceName ? ["hyper2kvm.conf", "hyper2kvm.yaml"]
            : [name + ".yaml", "hyper2kvm-" + name + ".conf", name + ".conf"]
    }

    /// The instance called `name`; `hyper2kvm` (or nil) is the default instance.
    public func instance(named name: String? = nil) throws -> DaemonInstance {
        let name = name ?? Self.defaultInstanceName
        try Self.checkName(name)
        let isDefault = name == Self.defaultInstanceName
        return DaemonInstance(
            name: name,
            configCandidates: Self.configFileNames(for: name).map { configDirectory + "/" + $0 },
            home: isDefault ? dataDirectory : dataDirectory + "/" + name,
            unitName: isDefault ? "hyper2kvm.service" : "hyper2kvm@\(name).service")
    }

    /// Every instance with a configuration file, the default instance first, then by name.
    public func configuredInstances() throws -> [DaemonInstance] {
        let entries: [String]
        do {
            entries = try FileManager.default.contentsOfDirectory(atPath: configDirectory)
        } catch CocoaError.fileReadNoSuchFile {
            return []
        } catch {
            throw InstanceError("\(configDirectory): cannot list instance configurations: \(error.localizedDescription)")
        }
        let names = Set(entries.compactMap(Self.instanceName(ofFile:)))
        return try names
            .filter { (try? Self.checkName($0)) != nil }
            .sorted { (rank($0), $0) < (rank($1), $1) }
            .map { try instance(named: $0) }
    }

    /// Which instance a file in the configuration directory configures: `hyper2kvm-NAME.conf`
    /// is NAME's (the systemd guide's name), `NAME.conf` and `NAME.yaml` are NAME's.
    static func instanceName(ofFile file: String) -> String? {
        guard !file.hasPrefix(".") else { return nil }
        if file.hasSuffix(".conf") {
            let stem = String(file.dropLast(5))
            let prefix = defaultInstanceName + "-"
            return stem.hasPrefix(prefix) && stem.count > prefix.count ? String(stem.dropFirst(prefix.count)) : stem
        }
        return file.hasSuffix(".yaml") ? String(file.dropLast(5)) : nil
    }

    private func rank(_ name: String) -> Int { name == Self.defaultInstanceName ? 0 : 1 }

    /// Instance names become file names and systemd unit instance strings: no path tricks.
    static func checkName(_ name: String) throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
        guard !name.isEmpty, name.count <= 64, !name.hasPrefix("."), !name.hasPrefix("-"), name.allSatisfy(allowed.contains) else {
            throw InstanceError("'\(name)' is not an instance name: use letters, digits, '_', '.', '-' (as in hyper2kvm@NAME.service)")
        }
    }
}

/// One daemon instance: its unit, its configuration file and its data home.
public struct DaemonInstance: Sendable, Equatable {
    public let name: String
    /// Where its configuration may be; at most one of them may exist.
    public let configCandidates: [String]
    /// The unit's `HYPER2KVM_HOME`: queue/, output/, work/ and state/ default beneath it.
    public let home: String
    public let unitName: String

    public var isDefault: Bool { name == InstanceLayout.defaultInstanceName }

    /// The instance's configuration file; nil when there is none. Several are refused, all
    /// named: silently preferring or merging one would run with settings nobody chose.
    public func configFile() throws -> String? {
        let existing = configCandidates.filter { FileManager.default.fileExists(atPath: $0) }
        guard existing.count <= 1 else {
            throw InstanceError("instance '\(name)' has \(existing.count) configuration files: \(existing.joined(separator: ", ")); "
                + "keep one and remove the others (they are never merged)")
        }
        return existing.first
    }

    /// The configuration the instance's daemon runs with: its file over the defaults under
    /// `home` (or `base`). A named instance without a file is refused (a mistyped name would
    /// otherwise start a daemon on defaults); the default instance runs on defaults.
    public func configuration(base: Configuration? = nil) throws -> Configuration {
        let base = base ?? Configuration(baseDirectory: home)
        guard let file = try configFile() else {
            guard isDefault else {
                throw InstanceError("instance '\(name)' has no configuration: create one of \(configCandidates.joined(separator: ", "))")
            }
            return base
        }
        return try ConfigurationLoader.load(files: [file], base: base)
    }

    /// The journal directory the instance's daemon uses: its configuration's `state_dir`,
    /// else `<home>/state`, exactly as the daemon resolves it under its unit.
    public func stateDirectory() throws -> String {
        guard try configFile() != nil else { return Configuration(baseDirectory: home).stateDir }
        return try configuration().stateDir
    }
}

public struct InstanceError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Whether a daemon holds an instance's journal.
public enum InstanceActivity: Sendable, Equatable {
    case running(pid: Int32?)
    case stopped
    case unknown(String)
}

/// One line of `hyper2kvm instances`.
public struct InstanceSummary: Sendable, Equatable, Codable {
    public let name: String
    public let unit: String
    public let config: String
    public let stateDir: String?
    /// running, stopped, or unknown
    public let state: String
    public let pid: Int32?
    /// Why state_dir or state could not be determined.
    public let problem: String?

    public static func survey(_ instance: DaemonInstance) -> InstanceSummary {
        let stateDirectory: String
        let configFile: String
        do {
            configFile = try instance.configFile() ?? "(none: defaults)"
            stateDirectory = try instance.stateDirectory()
        } catch {
            return InstanceSummary(name: instance.name, unit: instance.unitName, config: instance.configCandidates.joined(separator: " | "),
                                   stateDir: nil, state: "unknown", pid: nil, problem: "\(error)")
        }
        switch JournalLockProbe.activity(stateDirectory: stateDirectory) {
        case .running(let pid):
            return InstanceSummary(name: instance.name, unit: instance.unitName, config: configFile,
                                   stateDir: stateDirectory, state: "running", pid: pid, problem: nil)
        case .stopped:
            return InstanceSummary(name: instance.name, unit: instance.unitName, config: configFile,
                                   stateDir: stateDirectory, state: "stopped", pid: nil, problem: nil)
        case .unknown(let why):
            return InstanceSummary(name: instance.name, unit: instance.unitName, config: configFile,
                                   stateDir: stateDirectory, state: "unknown", pid: nil, problem: why)
        }
    }

    public static func render(_ rows: [InstanceSummary], json: Bool) throws -> String {
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            encoder.keyEncodingStrategy = .convertToSnakeCase
            return String(decoding: try encoder.encode(rows), as: UTF8.self)
        }
        guard !rows.isEmpty else { return "no instances (no *.yaml or *.conf configuration files)" }
        let header = ["INSTANCE", "UNIT", "STATE", "STATE DIR", "CONFIG"]
        let lines = rows.map { row -> [String] in
            let state = row.pid.map { "\(row.state) (pid \($0))" } ?? row.state
            let stateDir = row.stateDir ?? "?"
            return [row.name, row.unit, state, stateDir, row.config + (row.problem.map { "  (\($0))" } ?? "")]
        }
        let widths = header.indices.map { column in ([header] + lines).map { $0[column].count }.max() ?? 0 }
        return ([header] + lines).map { cells in
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
