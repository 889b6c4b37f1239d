import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Before the daemon starts: can this process write every directory its configuration names?
///
/// Under our units the answer depends on the unit, not only on ownership: ProtectSystem=strict
/// mounts the whole OS read-only except the unit's own directories and its ReadWritePaths=.
/// A daemon that found out only when it first wrote would fail, be restarted by systemd and
/// fail again; checked here, the refusal names the directory and the drop-in that allows it,
/// and the daemon exits with `exitStatus`, which the units list in RestartPreventExitStatus=.
public enum DirectoryAccessCheck {
    /// EX_CONFIG (sysexits.h): the configuration cannot work here; restarting will not help.
    public static let exitStatus: Int32 = 78

    /// What the daemon writes: the four directories and the log file's directory.
    public static func directories(of c: Configuration) -> [(key: String, path: String)] {
        var list = [("watch_dir", c.watchDir), ("output_dir", c.outputDir), ("workdir", c.workDir), ("state_dir", c.stateDir)]
        if let logFile = c.logFile {
            list.append(("log_file", URL(fileURLWithPath: logFile).deletingLastPathComponent().path))
        }
        return list.map { (key: $0.0, path: URL(fileURLWithPath: $0.1).standardizedFileURL.path) }
    }

    /// One sentence per directory the daemon could not write; empty when all are fine.
    /// - Parameter unit: the systemd unit the daemon runs under (`HYPER2KVM_UNIT`, set by our units).
    public static func problems(_ c: Configuration, unit: String?) -> [String] {
        directories(of: c).compactMap { key, path in
            problem(key: key, path: path, unit: unit)
        }
    }

    static func problem(key: String, path: String, unit: String?) -> String? {
        // The daemon creates missing directories: what matters is the nearest one that exists.
        var existing = path
        while !FileManager.default.fileExists(atPath: existing), existing != "/" {
            existing = URL(fileURLWithPath: existing).deletingLastPathComponent().path
        }
        var info = statvfs()
        if statvfs(existing, &info) == 0, info.f_flag & UInt(ST_RDONLY) != 0 {
            return readOnly(key: key, path: path, unit: unit)
        }
        guard access(existing, W_OK | X_OK) != 0 else { return nil }
        if errno == EROFS { return readOnly(key: key, path: path, unit: unit) }
        if let unit, ["/home", "/root", "/run/user"].contains(where: { path == $0 || path.hasPrefix($0 + "/") }) {
            return readOnly(key: key, path: path, unit: unit)
                + " The unit also hides home directories (ProtectHome=yes): add ProtectHome=no to the same drop-in."
        }
        let reason = String(cString: strerror(errno))
        let user = userName(getuid())
        var owner = "?"
        var status = stat()
        if stat(existing, &status) == 0 { owner = userName(status.st_uid) }
        let subject = existing == path ? "" : " (its parent \(existing) must let it be created)"
        return "\(key) \(path): not writable by user \(user): \(reason)\(subject); \(existing) belongs to \(owner). "
            + "Make it the daemon's: chown \(user): \(existing)"
    }

    private static func readOnly(key: String, path: String, unit: String?) -> String {
        guard let unit else {
            return "\(key) \(path): on a read-only file system here"
        }
        return "\(key) \(path): \(unit) may not write there (ProtectSystem=strict makes everything read-only "
            + "except the unit's own directories). Allow it with a drop-in, /etc/systemd/system/\(unit).d/paths.conf "
            + "(or `systemctl edit \(unit)`), holding:\n  [Service]\n  ReadWritePaths=\(path)\n"
            + "  (the directory must exist; see examples/extra-paths.conf in the documentation), then "
            + "`systemctl daemon-reload && systemctl restart \(unit)`"
    }

    private static func userName(_ uid: uid_t) -> String {
        guard let entry = getpwuid(uid), let name = entry.pointee.pw_name else { return "uid \(uid)" }
        return String(cString: name)
    }
}
