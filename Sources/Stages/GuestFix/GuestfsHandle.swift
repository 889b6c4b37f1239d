import CGuestfs
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One libguestfs appliance, owned by one job: the only place hyper2kvm calls the C API.
///
/// Every failing call throws `StageError(.toolFailed, file: <disk>, …)` carrying the call
/// name and libguestfs' full error text (for `command`/`sh` that is the command's whole
/// stderr, whose first line is often misleading). `shutdown()` must be called when the work
/// is done: `guestfs_close` alone shuts the appliance down but ignores write-back errors,
/// so a job whose changes may not have reached the disk would look successful.
///
/// Not `Sendable` on purpose: calls on one handle serialise inside libguestfs anyway, and
/// `guestfs_last_error` is thread-local, so a handle is created, used and closed on one
/// thread (see `LinuxGuestFixer`, which runs on a dedicated thread). Never share one.
public final class GuestfsHandle {
    /// Augeas flags from augeas.h (guestfs_aug_init takes them as a plain int).
    public struct AugeasFlags: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let saveBackup = AugeasFlags(rawValue: 1)
        public static let noLoad = AugeasFlags(rawValue: 32)
    }

    private let handle: OpaquePointer
    /// The disk errors are reported against (the first drive added, or the identifier).
    public private(set) var subject: String
    private var closed = false

    /// Creates a handle that reports errors through `guestfs_last_error` (no stderr spam)
    /// and keeps SIGINT from the terminal away from the appliance.
    public init(identifier: String, memoryMiB: Int32 = 2048, cpus: Int32 = 1) throws {
        guard let handle = cguestfs_create_flags(0) else {
            throw StageError(.toolFailed, file: identifier,
                             "guestfs_create_flags failed: \(String(cString: strerror(errno)))")
        }
        self.handle = handle
        self.subject = identifier
        guestfs_set_error_handler(handle, nil, nil)
        try check("set_identifier", guestfs_set_identifier(handle, Self.sanitisedIdentifier(identifier)))
        try check("set_pgroup", guestfs_set_pgroup(handle, 1))
        try check("set_memsize", guestfs_set_memsize(handle, memoryMiB))
        if cpus > 1 { try check("set_smp", guestfs_set_smp(handle, cpus)) }
    }

    deinit {
        // Reached without shutdown() only on an error path, where the job fails anyway.
        if !closed { guestfs_close(handle) }
    }

    /// libguestfs accepts only [A-Za-z0-9_-] in identifiers.
    static func sanitisedIdentifier(_ identifier: String) -> String {
        String(identifier.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") ? $0 : "_" })
    }

    // MARK: - Drives and appliance

    /// Adds a disk with an explicit format: letting qemu probe an untrusted image would let
    /// a raw guest disk pretend to be qcow2 with a backing file on the host.
    public func addDrive(_ path: String, format: String, readOnly: Bool = false) throws {
        if !subjectIsDisk { subject = path; subjectIsDisk = true }
        let status = cguestfs_add_drive(handle, path, format, readOnly ? 1 : 0, "unsafe", "besteffort")
        try check("add_drive(\(path), format=\(format))", status)
    }
    private var subjectIsDisk = false

    public func launch() throws { try check("launch", guestfs_launch(handle)) }

    /// Flushes and stops the appliance; a failure here means changes may be lost.
    public func shutdown() throws {
        guard !closed else { return }
        let status = guestfs_shutdown(handle)
        let message = status == -1 ? lastError() : ""
        guestfs_close(handle)
        closed = true
        if status == -1 {
            throw StageError(.toolFailed, file: subject, "guestfs_shutdown failed (guest changes may not be written): \(message)")
        }
    }

    // MARK: - Inspection

    public func inspectOS() throws -> [String] { try stringList("inspect_os", guestfs_inspect_os(handle)) }
    public func inspectType(_ root: String) throws -> String { try string("inspect_get_type", guestfs_inspect_get_type(handle, root)) }
    public func inspectDistro(_ root: String) throws -> String { try string("inspect_get_distro", guestfs_inspect_get_distro(handle, root)) }
    public func inspectProductName(_ root: String) throws -> String { try string("inspect_get_product_name", guestfs_inspect_get_product_name(handle, root)) }
    public func inspectMajorVersion(_ root: String) throws -> Int { Int(try checkInt("inspect_get_major_version", guestfs_inspect_get_major_version(handle, root))) }
    public func inspectMinorVersion(_ root: String) throws -> Int { Int(try checkInt("inspect_get_minor_version", guestfs_inspect_get_minor_version(handle, root))) }
    public func inspectArch(_ root: String) throws -> String { try string("inspect_get_arch", guestfs_inspect_get_arch(handle, root)) }
    public func inspectPackageFormat(_ root: String) throws -> String { try string("inspect_get_package_format", guestfs_inspect_get_package_format(handle, root)) }
    public func inspectPackageManagement(_ root: String) throws -> String { try string("inspect_get_package_management", guestfs_inspect_get_package_management(handle, root)) }
    public func inspectHostname(_ root: String) throws -> String { try string("inspect_get_hostname", guestfs_inspect_get_hostname(handle, root)) }
    public func inspectOsinfo(_ root: String) throws -> String { try string("inspect_get_osinfo", guestfs_inspect_get_osinfo(handle, root)) }

    /// Mountpoint → device, as the guest's fstab says (resolved to appliance devices).
    public func inspectMountpoints(_ root: String) throws -> [String: String] {
        pairs(try stringList("inspect_get_mountpoints", guestfs_inspect_get_mountpoints(handle, root)))
    }

    // MARK: - Mounting

    public func mount(_ device: String, at mountpoint: String, readOnly: Bool = false) throws {
        let status = readOnly ? guestfs_mount_ro(handle, device, mountpoint) : guestfs_mount(handle, device, mountpoint)
        try check("mount(\(device), \(mountpoint))", status)
    }

    public func umountAll() throws { try check("umount_all", guestfs_umount_all(handle)) }
    public func fstrim(_ mountpoint: String) throws { try check("fstrim(\(mountpoint))", cguestfs_fstrim(handle, mountpoint)) }

    // MARK: - Files

    public func exists(_ path: String) throws -> Bool { try checkInt("exists(\(path))", guestfs_exists(handle, path)) != 0 }
    public func isFile(_ path: String) throws -> Bool { try checkInt("is_file(\(path))", guestfs_is_file(handle, path)) != 0 }
    public func isDirectory(_ path: String) throws -> Bool { try checkInt("is_dir(\(path))", guestfs_is_dir(handle, path)) != 0 }

    /// A text file's content (NUL bytes would truncate; use `readFile` for binary data).
    public func cat(_ path: String) throws -> String { try string("cat(\(path))", guestfs_cat(handle, path)) }

    public func readFile(_ path: String) throws -> Data {
        var size = 0
        guard let bytes = guestfs_read_file(handle, path, &size) else {
            throw error("read_file(\(path))")
        }
        defer { free(bytes) }
        return Data(bytes: bytes, count: size)
    }

    public func write(_ path: String, _ content: String) throws {
        var bytes = Array(content.utf8)
        let status = bytes.withUnsafeMutableBufferPointer { buffer in
            buffer.baseAddress.map { base in
                base.withMemoryRebound(to: CChar.self, capacity: buffer.count) {
                    guestfs_write(handle, path, $0, buffer.count)
                }
            } ?? guestfs_write(handle, path, "", 0)
        }
        try check("write(\(path))", status)
    }

    /// Paths matching a shell glob inside the guest; empty when nothing matches.
    public func glob(_ pattern: String) throws -> [String] { try stringList("glob_expand(\(pattern))", guestfs_glob_expand(handle, pattern)) }
    public func list(_ directory: String) throws -> [String] { try stringList("ls(\(directory))", guestfs_ls(handle, directory)) }

    /// Copies keeping mode, owner and times (`cp -a`).
    public func copy(_ source: String, to destination: String) throws { try check("cp_a(\(source), \(destination))", guestfs_cp_a(handle, source, destination)) }
    public func chmod(_ mode: Int32, _ path: String) throws { try check("chmod(\(path))", guestfs_chmod(handle, mode, path)) }
    public func move(_ source: String, to destination: String) throws { try check("mv(\(source), \(destination))", guestfs_mv(handle, source, destination)) }
    public func removeIfPresent(_ path: String) throws { try check("rm_f(\(path))", guestfs_rm_f(handle, path)) }
    public func makeDirectories(_ path: String) throws { try check("mkdir_p(\(path))", guestfs_mkdir_p(handle, path)) }

    /// (available bytes for unprivileged users, total bytes) of the filesystem holding `path`.
    public func freeSpace(_ path: String) throws -> (available: Int64, total: Int64) {
        guard let stats = guestfs_statvfs(handle, path) else { throw error("statvfs(\(path))") }
        defer { guestfs_free_statvfs(stats) }
        return (stats.pointee.bavail * stats.pointee.frsize, stats.pointee.blocks * stats.pointee.frsize)
    }

    public func fileSize(_ path: String) throws -> Int64 {
        try checkInt64("filesize(\(path))", guestfs_filesize(handle, path))
    }

    // MARK: - Commands inside the guest

    /// Runs a guest binary (chrooted into the guest; /dev, /proc, /sys bind-mounted).
    /// A failure carries the command's entire stderr.
    @discardableResult
    public func command(_ arguments: [String]) throws -> String {
        var cArguments: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        cArguments.append(nil)
        defer { for pointer in cArguments { free(pointer) } }
        let output = cArguments.withUnsafeBufferPointer { guestfs_command(handle, $0.baseAddress) }
        return try string("command(\(arguments.joined(separator: " ")))", output)
    }

    /// Runs `/bin/sh -c script` inside the guest.
    @discardableResult
    public func sh(_ script: String) throws -> String { try string("sh(\(script))", guestfs_sh(handle, script)) }

    // MARK: - Filesystem identity

    /// The filesystem UUID, or "" when the filesystem has none.
    public func vfsUUID(_ device: String) throws -> String { try string("vfs_uuid(\(device))", guestfs_vfs_uuid(handle, device)) }
    public func vfsLabel(_ device: String) throws -> String { try string("vfs_label(\(device))", guestfs_vfs_label(handle, device)) }
    public func vfsType(_ device: String) throws -> String { try string("vfs_type(\(device))", guestfs_vfs_type(handle, device)) }
    /// blkid's tags (UUID, PARTUUID, LABEL, TYPE…) for a device.
    public func blkid(_ device: String) throws -> [String: String] { pairs(try stringList("blkid(\(device))", guestfs_blkid(handle, device))) }
    public func listPartitions() throws -> [String] { try stringList("list_partitions", guestfs_list_partitions(handle)) }
    public func listDevices() throws -> [String] { try stringList("list_devices", guestfs_list_devices(handle)) }

    // MARK: - Augeas

    public func augeasInit(root: String = "/", flags: AugeasFlags = []) throws { try check("aug_init", guestfs_aug_init(handle, root, flags.rawValue)) }
    public func augeasClose() throws { try check("aug_close", guestfs_aug_close(handle)) }
    public func augeasLoad() throws { try check("aug_load", guestfs_aug_load(handle)) }
    public func augeasMatch(_ path: String) throws -> [String] { try stringList("aug_match(\(path))", guestfs_aug_match(handle, path)) }
    public func augeasGet(_ path: String) throws -> String { try string("aug_get(\(path))", guestfs_aug_get(handle, path)) }
    public func augeasSet(_ path: String, _ value: String) throws { try check("aug_set(\(path))", guestfs_aug_set(handle, path, value)) }
    @discardableResult
    public func augeasRemove(_ path: String) throws -> Int { Int(try checkInt("aug_rm(\(path))", guestfs_aug_rm(handle, path))) }
    public func augeasSave() throws { try check("aug_save", guestfs_aug_save(handle)) }

    // MARK: - Error plumbing

    private func lastError() -> String {
        guard let message = guestfs_last_error(handle) else { return "unknown error (errno \(guestfs_last_errno(handle)))" }
        // Copied at once: libguestfs frees it on the next error.
        return String(cString: message)
    }

    private func error(_ call: String) -> StageError {
        let message = lastError()
        let code: StageError.Code = message.contains("No space left on device") ? .noSpace : .toolFailed
        return StageError(code, file: subject, "guestfs_\(call) failed: \(message)")
    }

    private func check(_ call: String, _ status: Int32) throws {
        if status == -1 { throw error(call) }
    }

    private func checkInt(_ call: String, _ status: Int32) throws -> Int32 {
        if status == -1 { throw error(call) }
        return status
    }

    private func checkInt64(_ call: String, _ status: Int64) throws -> Int64 {
        if status == -1 { throw error(call) }
        return status
    }

    private func string(_ call: String, _ value: UnsafeMutablePointer<CChar>?) throws -> String {
        guard let value else { throw error(call) }
        defer { free(value) }
        return String(cString: value)
    }

    private func stringList(_ call: String, _ list: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) throws -> [String] {
        guard let list else { throw error(call) }
        defer { free(list) }
        var result: [String] = []
        var index = 0
        while let element = list[index] {
            result.append(String(cString: element))
            free(element)
            index += 1
        }
        return result
    }

    private func pairs(_ flat: [String]) -> [String: String] {
        var result: [String: String] = [:]
        var index = 0
        while index + 1 < flat.count {
            result[flat[index]] = flat[index + 1]
            index += 2
        }
        return result
    }
}
