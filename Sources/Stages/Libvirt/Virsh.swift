import Foundation

/// `virsh -c URI …` for the register stage. Every failure becomes a `StageError` that
/// names the connection URI and the domain, and quotes libvirt's own message verbatim,
/// so an operator sees exactly what libvirt refused.
public struct Virsh: Sendable {
    public let uri: String
    /// The domain the calls are about, for error messages.
    public let domainName: String
    /// The file an error is filed under (the published domain.xml).
    public let subjectFile: String?
    let executable: String

    public init(uri: String, domainName: String, subjectFile: String? = nil, executable: String = "virsh") {
        self.uri = uri
        self.domainName = domainName
        self.subjectFile = subjectFile
        self.executable = executable
    }

    /// One domain as `virsh list --all --uuid --name` shows it.
    public struct DomainEntry: Sendable, Equatable {
        public var uuid: String
        public var name: String
    }

    /// Every defined or running domain on the connection.
    public func domains() async throws -> [DomainEntry] {
        let output = try await run(["list", "--all", "--uuid", "--name"])
        return output.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard fields.count == 2 else { return nil }
            return DomainEntry(uuid: String(fields[0]).lowercased(),
                               name: String(fields[1]).trimmingCharacters(in: .whitespaces))
        }
    }

    /// `shut off`, `running`, `paused`…
    public func state(ofDomain name: String) async throws -> String {
        try await run(["domstate", "--domain", name]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public func define(xmlFile: URL) async throws {
        try await run(["define", "--file", xmlFile.path])
    }

    /// Removes a definition (and its NVRAM file, which belongs to the definition); never storage.
    public func undefine(_ name: String) async throws {
        try await run(["undefine", "--nvram", "--domain", name])
    }

    public func setAutostart(_ enabled: Bool, domain name: String) async throws {
        try await run(enabled ? ["autostart", "--domain", name] : ["autostart", "--disable", "--domain", name])
    }

    /// Whether `pool` exists and is active; a missing pool is libvirt's error.
    public func requireActivePool(_ pool: String) async throws {
        let info = try await run(["pool-info", "--pool", pool])
        let state = info.split(separator: "\n").first { $0.hasPrefix("State:") }
            .map { $0.dropFirst("State:".count).trimmingCharacters(in: .whitespaces) }
        guard state == "running" else {
            throw failure("storage pool '\(pool)' is not active (state: \(state ?? "unknown")); start it with "
                          + "`virsh -c \(uri) pool-start \(pool)`")
        }
    }

    /// Names of the volumes in `pool` (names with spaces are reported by their first word;
    /// the names this stage creates have none).
    public func volumeNames(inPool pool: String) async throws -> Set<String> {
        let output = try await run(["vol-list", "--pool", pool])
        return Set(output.split(separator: "\n").compactMap { line in
            line.split(separator: " ", omittingEmptySubsequences: true).first.map(String.init)
        })
    }

    public func deleteVolume(_ name: String, pool: String) async throws {
        try await run(["vol-delete", "--pool", pool, "--vol", name])
    }

    /// Creates an empty raw volume and uploads `file` into it byte for byte (holes kept);
    /// the pool refresh that follows lets libvirt detect the real format (qcow2).
    public func importVolume(_ name: String, pool: String, from file: URL) async throws {
        try await run(["vol-create-as", "--pool", pool, "--name", name, "--capacity", "0", "--format", "raw"])
        let size = (try? FileManager.default.attributesOfItem(atPath: file.path)[.size] as? NSNumber)?.uint64Value ?? 0
        try await run(["vol-upload", "--pool", pool, "--vol", name, "--file", file.path, "--sparse"],
                      limits: .copying(bytes: size))
        try await run(["pool-refresh", "--pool", pool])
    }

    public func volumePath(_ name: String, pool: String) async throws -> String {
        try await run(["vol-path", "--pool", pool, "--vol", name]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A call that only asks libvirtd to change its own records. libvirtd may be busy
    /// (it serialises calls per domain and pool), but a call still running after this
    /// waits on a daemon that hangs, and would hold the job and the ones behind it.
    static let callLimits = ExternalCommand.Limits.shortTool(
        .seconds(300), because: "a libvirt call that only changes libvirt's records does not take 5 minutes "
            + "unless libvirtd hangs")

    @discardableResult
    func run(_ arguments: [String], limits: ExternalCommand.Limits = Virsh.callLimits) async throws -> String {
        let command = ExternalCommand(executable, ["-q", "-c", uri] + arguments, limits: limits)
        let result: ExternalCommand.Result
        do {
            result = try await command.run()
        } catch let error as StageError {
            throw failure("virsh \(arguments.first ?? "") failed: \(error.message)")
        }
        guard result.status == 0 else {
            let said = result.stderrText.trimmingCharacters(in: .whitespacesAndNewlines)
            throw failure("virsh \(arguments.first ?? "") failed: "
                          + (said.isEmpty ? "exit status \(result.status)" : said))
        }
        return result.stdoutText
    }

    func failure(_ message: String, code: StageError.Code = .toolFailed) -> StageError {
        StageError(code, file: subjectFile, "libvirt \(uri), domain '\(domainName)': \(message)")
    }
}
