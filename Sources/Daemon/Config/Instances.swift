import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where daemon instances keep their configuration and data, mirroring the systemd units:
/// `hyper2kvm.service` reads `<config>/hyper2kvm.yaml` with `HYPER2KVM_HOME=<data>`;
/// `hyper2kvm@NAME.service` reads `<config>/NAME.yaml` with `HYPER2KVM_HOME=<data>/NAME`.
public struct InstanceLayout: Sendable, Equatable {
    /// The default instance's name: its configuration is `hyper2kvm.yaml`.
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

    /// The instance called `name`; `hyper2kvm` (or nil) is the default instance.
    public func instance(named name: String? = nil) throws -> DaemonInstance {
        let name = name ?? Self.defaultInstanceName
        try Self.checkName(name)
        let isDefault = name == Self.defaultInstanceName
        return DaemonInstance(
            name: name,
            configFile: configDirectory + "/" + name + ".yaml",
            home: isDefault ? dataDirectory : dataDirectory + "/" + name,
            unitName: isDefault ? "hyper2kvm.service" : "hyper2kvm@\(name).service")
    }

    /// Every `<config>/*.yaml`, the default instance first, then by name.
    public func configuredInstances() throws -> [DaemonInstance] {
        let entries: [String]
        do {
            entries = try FileManager.default.contentsOfDirectory(atPath: configDirectory)
        } catch CocoaError.fileReadNoSuchFile {
            return []
        } catch {
            throw InstanceError("\(configDirectory): cannot list instance configurations: \(error.localizedDescription)")
        }
        let names = entries.filter { $0.hasSuffix(".yaml") && !$0.hasPrefix(".") }.map { String($0.dropLast(5)) }
        return try names
            .filter { (try? Self.checkName($0)) != nil }
            .sorted { (rank($0), $0) < (rank($1), $1) }
            .map { try instance(named: $0) }
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
    public let configFile: String
    /// The unit's `HYPER2KVM_HOME`: queue/, output/, work/ and state/ default beneath it.
    public let home: String
    public let unitName: String

    public var hasConfigFile: Bool { FileManager.default.fileExists(atPath: configFile) }

    /// The journal directory the instance's daemon uses: its configuration's `state_dir`,
    /// else `<home>/state`, exactly as the daemon resolves it under its unit.
    public func stateDirectory() throws -> String {
        guard hasConfigFile else { return Configuration(baseDirectory: home).stateDir }
        return try ConfigurationLoader.load(files: [configFile], base: Configuration(baseDirectory: home)).stateDir
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

/// Looks at `<state_dir>/journal.lock` without touching its lock: taking even a shared
/// flock for a moment could make a daemon starting at that instant refuse to run. The
/// kernel's table of held locks (/proc/locks) says whether anyone holds it; the file says
/// which pid took it.
public enum JournalLockProbe {
    public static func activity(stateDirectory: String, locksTable: String = "/proc/locks") -> InstanceActivity {
        let lockPath = stateDirectory + "/journal.lock"
        var info = stat()
        guard stat(lockPath, &info) == 0 else {
            return errno == ENOENT ? .stopped : .unknown("\(lockPath): \(String(cString: strerror(errno)))")
        }
        guard let table = try? String(contentsOfFile: locksTable, encoding: .utf8) else {
            return .unknown("\(locksTable) is not readable")
        }
        let recordedPID = (try? String(contentsOfFile: lockPath, encoding: .utf8))
            .flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        let inode = UInt64(info.st_ino)
        guard isFlockHeld(inode: inode, table: table) || isFlockHeldOnRereading(inode: inode, locksTable: locksTable) else {
            return .stopped
        }
        return .running(pid: recordedPID)
    }

    /// /proc/locks comes a page per read(), and the kernel finds the next page by counting
    /// entries: a lock released between two reads shifts the rest, so one entry is skipped.
    /// On a host where qemu processes take and drop image locks all the time, a held lock
    /// was missed that way (seen in CI). A skip can only hide an entry, never invent one,
    /// so a few more reads settle it.
    private static func isFlockHeldOnRereading(inode: UInt64, locksTable: String) -> Bool {
        (0..<3).contains { _ in
            (try? String(contentsOfFile: locksTable, encoding: .utf8)).map { isFlockHeld(inode: inode, table: $0) } ?? false
        }
    }

    /// Matches on the inode alone: under overlayfs the lock is recorded against the
    /// upper file's device, which stat() through the overlay does not report.
    public static func isFlockHeld(inode: UInt64, table: String) -> Bool {
        table.split(separator: "\n").contains { line in
            // "1: FLOCK  ADVISORY  WRITE 1234 fd:00:5678 0 EOF"; blocked waiters start with "->".
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, fields[1] == "FLOCK", fields[2] != "->" else { return false }
            return fields[5].split(separator: ":").last.flatMap { UInt64($0) } == inode
        }
    }
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
        do {
            stateDirectory = try instance.stateDirectory()
        } catch {
            return InstanceSummary(name: instance.name, unit: instance.unitName, config: instance.configFile,
                                   stateDir: nil, state: "unknown", pid: nil, problem: "\(error)")
        }
        switch JournalLockProbe.activity(stateDirectory: stateDirectory) {
        case .running(let pid):
            return InstanceSummary(name: instance.name, unit: instance.unitName, config: instance.configFile,
                                   stateDir: stateDirectory, state: "running", pid: pid, problem: nil)
        case .stopped:
            return InstanceSummary(name: instance.name, unit: instance.unitName, config: instance.configFile,
                                   stateDir: stateDirectory, state: "stopped", pid: nil, problem: nil)
        case .unknown(let why):
            return InstanceSummary(name: instance.name, unit: instance.unitName, config: instance.configFile,
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
        guard !rows.isEmpty else { return "no instances (no *.yaml configuration files)" }
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
