import CLibguestfs
import Foundation
import Stages

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
final class GuestfsHandle {
    /// Augeas flags from augeas.h (guestfs_aug_init takes them as a plain int).
    struct AugeasFlags: OptionSet, Sendable {
        let rawValue: Int32
        init(rawValue: Int32) { self.rawValue = rawValue }
        static let saveBackup = AugeasFlags(rawValue: 1)
        static let noLoad = AugeasFlags(rawValue: 32)
    }

    private let handle: OpaquePointer
    /// The disk errors are reported against (the first drive added, or the identifier).
    private(set) var subject: String
    private var closed = false

    /// Creates a handle that reports errors through `guestfs_last_error` (no stderr spam)
    /// and keeps SIGINT from the terminal away from the appliance.
    init(identifier: String, memoryMiB: Int32 = 2048, cpus: Int32 = 1) throws {
        guard let handle = cguestfs_create_flags(0) else {
            throw StageError(.toolFailed, file: identifier, "guestfs_create_flags failed: \(String(cString: strerror(errno)))")
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
    func addDrive(_ path: String, format: String, readOnly: Bool = false) throws {
        if !subjectIsDisk { subject = path; subjectIsDisk = true }
        let status = cguestfs_add_drive(handle, path, format, readOnly ? 1 : 0, "unsafe", "besteffort")
        try check("add_drive(\(path), format=\(format))", status)
    }
    private var subjectIsDisk = false

    func launch() throws { try check("launch", guestfs_launch(handle)) }

    /// Flushes and stops the appliance; a failure here means changes may be lost.
    func shutdown() throws {
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

    func inspectOS() throws -> [String] { try stringList("inspect_os", guestfs_inspect_os(handle)) }
    func inspectType(_ root: String) throws -> String { try string("inspect_get_type", guestfs_inspect_get_type(handle, root)) }
    func inspectDistro(_ root: String) throws -> String { try string("inspect_get_distro", guestfs_inspect_get_distro(handle, root)) }
    func inspectProductName(_ root: String) throws -> String { try string("inspect_get_product_name", guestfs_inspect_get_product_name(handle, root)) }
    func inspectMajorVersion(_ root: String) throws -> Int { Int(try checkInt("inspect_get_major_version", guestfs_inspect_get_major_version(handle, root))) }
    func inspectMinorVersion(_ root: String) throws -> Int { Int(try checkInt("inspect_get_minor_version", guestfs_inspect_get_minor_version(handle, root))) }
    func inspectArch(_ root: String) throws -> String { try string("inspect_get_arch", guestfs_inspect_get_arch(handle, root)) }
    func inspectPackageFormat(_ root: String) throws -> String { try string("inspect_get_package_format", guestfs_inspect_get_package_format(handle, root)) }
    func inspectPackageManagement(_ root: String) throws -> String { try string("inspect_get_package_management", guestfs_inspect_get_package_management(handle, root)) }
    func inspectHostname(_ root: String) throws -> String { try string("inspect_get_hostname", guestfs_inspect_get_hostname(handle, root)) }
    func inspectOsinfo(_ root: String) throws -> String { try string("inspect_get_osinfo", guestfs_inspect_get_osinfo(handle, root)) }

    /// Mountpoint → device, as the guest's fstab says (resolved to appliance devices).
    func inspectMountpoints(_ root: String) throws -> [String: String] {
        pairs(try stringList("inspect_get_mountpoints", guestfs_inspect_get_mountpoints(handle, root)))
    }

    // MARK: - Mounting

    func mount(_ device: String, at mountpoint: String, readOnly: Bool = false) throws {
        let status = readOnly ? guestfs_mount_ro(handle, device, mountpoint) : guestfs_mount(handle, device, mountpoint)
        try check("mount(\(device), \(mountpoint))", status)
    }

    func umountAll() throws { try check("umount_all", guestfs_umount_all(handle)) }
    func fstrim(_ mountpoint: String) throws { try check("fstrim(\(mountpoint))", cguestfs_fstrim(handle, mountpoint)) }

    // MARK: - Files

    func exists(_ path: String) throws -> Bool { try checkInt("exists(\(path))", guestfs_exists(handle, path)) != 0 }
    func isFile(_ path: String) throws -> Bool { try checkInt("is_file(\(path))", guestfs_is_file(handle, path)) != 0 }
    func isDirectory(_ path: String) throws -> Bool { try checkInt("is_dir(\(path))", guestfs_is_dir(handle, path)) != 0 }

    /// A text file's content (NUL bytes would truncate; use `readFile` for binary data).
    func cat(_ path: String) throws -> String { try string("cat(\(path))", guestfs_cat(handle, path)) }

    func readFile(_ path: String) throws -> Data {
        var size = 0
        guard let bytes = guestfs_read_file(handle, path, &size) else {
            throw error("read_file(\(path))")
        }
        defer { free(bytes) }
        return Data(bytes: bytes, count: size)
    }

    func write(_ path: String, _ content: String) throws {
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
    func glob(_ pattern: String) throws -> [String] { try stringList("glob_expand(\(pattern))", guestfs_glob_expand(handle, pattern)) }
    func list(_ directory: String) throws -> [String] { try stringList("ls(\(directory))", guestfs_ls(handle, directory)) }

    /// Copies keeping mode, owner and times (`cp -a`).
    func copy(_ source: String, to destination: String) throws { try check("cp_a(\(source), \(destination))", guestfs_cp_a(handle, source, destination)) }
    func chmod(_ mode: Int32, _ path: String) throws { try check("chmod(\(path))", guestfs_chmod(handle, mode, path)) }
    func move(_ source: String, to destination: String) throws { try check("mv(\(source), \(destination))", guestfs_mv(handle, source, destination)) }
    func removeIfPresent(_ path: String) throws { try check("rm_f(\(path))", guestfs_rm_f(handle, path)) }
    func makeDirectories(_ path: String) throws { try check("mkdir_p(\(path))", guestfs_mkdir_p(handle, path)) }

    /// (available bytes for unprivileged users, total bytes) of the filesystem holding `path`.
    func freeSpace(_ path: String) throws -> (available: Int64, total: Int64) {
        try statvfs(path) { ($0.bavail * $0.frsize, $0.blocks * $0.frsize) }
    }

    private func statvfs<T>(_ path: String, _ read: (guestfs_statvfs) -> T) throws -> T {
        guard let stats = guestfs_statvfs(handle, path) else { throw error("statvfs(\(path))") }
        defer { guestfs_free_statvfs(stats) }
        return read(stats.pointee)
    }

    func fileSize(_ path: String) throws -> Int64 {
        try checkInt64("filesize(\(path))", guestfs_filesize(handle, path))
    }

    /// Whether the appliance has an optional group of calls (`selinuxrelabel`, …).
    func featureAvailable(_ group: String) -> Bool {
        let name = strdup(group)
        defer { free(name) }
        var groups: [UnsafeMutablePointer<CChar>?] = [name, nil]
        return groups.withUnsafeMutableBufferPointer { guestfs_feature_available(handle, $0.baseAddress) } == 1
    }

    /// Resets the SELinux labels under `path` (inside the mounted guest) from `specfile`.
    func selinuxRelabel(specfile: String, path: String) throws {
        try check("selinux_relabel(\(specfile), \(path))", cguestfs_selinux_relabel(handle, specfile, path))
    }

    // MARK: - Commands inside the guest

    /// Runs a guest binary (chrooted into the guest; /dev, /proc, /sys bind-mounted).
    /// A failure carries the command's entire stderr.
    @discardableResult
    func command(_ arguments: [String]) throws -> String {
        var cArguments: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        cArguments.append(nil)
        defer { for pointer in cArguments { free(pointer) } }
        let output = cArguments.withUnsafeBufferPointer { guestfs_command(handle, $0.baseAddress) }
        return try string("command(\(arguments.joined(separator: " ")))", output)
    }

    /// Runs `/bin/sh -c script` inside the guest.
    @discardableResult
    func sh(_ script: String) throws -> String { try string("sh(\(script))", guestfs_sh(handle, script)) }

    // MARK: - Filesystem identity

    /// The filesystem UUID, or "" when the filesystem has none.
    func vfsUUID(_ device: String) throws -> String { try string("vfs_uuid(\(device))", guestfs_vfs_uuid(handle, device)) }
    func vfsLabel(_ device: String) throws -> String { try string("vfs_label(\(device))", guestfs_vfs_label(handle, device)) }
    func vfsType(_ device: String) throws -> String { try string("vfs_type(\(device))", guestfs_vfs_type(handle, device)) }
    /// blkid's tags (UUID, PARTUUID, LABEL, TYPE…) for a device.
    func blkid(_ device: String) throws -> [String: String] { pairs(try stringList("blkid(\(device))", guestfs_blkid(handle, device))) }
    func listPartitions() throws -> [String] { try stringList("list_partitions", guestfs_list_partitions(handle)) }
    func listDevices() throws -> [String] { try stringList("list_devices", guestfs_list_devices(handle)) }

    // MARK: - Partitions, volumes, boot facts

    /// "gpt", "msdos", … of a whole disk.
    func partitionTableType(_ disk: String) throws -> String { try string("part_get_parttype(\(disk))", guestfs_part_get_parttype(handle, disk)) }
    /// The whole disk a partition is on (/dev/sda1 → /dev/sda).
    func partitionDisk(_ partition: String) throws -> String { try string("part_to_dev(\(partition))", guestfs_part_to_dev(handle, partition)) }
    func partitionNumber(_ partition: String) throws -> Int { Int(try checkInt("part_to_partnum(\(partition))", guestfs_part_to_partnum(handle, partition))) }
    /// The GPT partition type GUID (upper case).
    func gptType(_ disk: String, partition: Int) throws -> String {
        try string("part_get_gpt_type(\(disk), \(partition))", guestfs_part_get_gpt_type(handle, disk, Int32(clamping: partition)))
    }
    /// The MBR partition type byte.
    func mbrID(_ disk: String, partition: Int) throws -> Int {
        Int(try checkInt("part_get_mbr_id(\(disk), \(partition))", guestfs_part_get_mbr_id(handle, disk, Int32(clamping: partition))))
    }
    /// Raw bytes of a device (the MBR's boot code).
    func readDevice(_ device: String, count: Int32, offset: Int64) throws -> Data {
        var size = 0
        guard let bytes = guestfs_pread_device(handle, device, count, offset, &size) else { throw error("pread_device(\(device))") }
        defer { free(bytes) }
        return Data(bytes: bytes, count: size)
    }
    /// Logical volumes as /dev/<vg>/<lv>.
    func logicalVolumes() throws -> [String] { try stringList("lvs", guestfs_lvs(handle)) }
    /// LVM's UUID of a logical volume (`/dev/vg/lv`) or of a volume group, without dashes.
    func logicalVolumeUUID(_ device: String) throws -> String { try string("lvuuid(\(device))", guestfs_lvuuid(handle, device)) }
    func volumeGroupUUID(_ name: String) throws -> String { try string("vguuid(\(name))", guestfs_vguuid(handle, name)) }
    /// md devices libguestfs assembled (/dev/md127).
    func mdDevices() throws -> [String] { try stringList("list_md_devices", guestfs_list_md_devices(handle)) }
    /// `mdadm --detail --export` of an array, keys without `MD_` in lower case (uuid, name, devname…).
    func mdDetail(_ device: String) throws -> [String: String] { pairs(try stringList("md_detail(\(device))", guestfs_md_detail(handle, device))) }
    /// File names inside a gzip-compressed (or uncompressed) cpio initramfs, by the appliance's zcat and cpio.
    func initrdList(_ path: String) throws -> [String] { try stringList("initrd_list(\(path))", guestfs_initrd_list(handle, path)) }
    /// The canonical path, symlinks resolved inside the guest's tree.
    func realpath(_ path: String) throws -> String { try string("realpath(\(path))", guestfs_realpath(handle, path)) }

    // MARK: - Augeas

    func augeasInit(root: String = "/", flags: AugeasFlags = []) throws { try check("aug_init", guestfs_aug_init(handle, root, flags.rawValue)) }
    func augeasClose() throws { try check("aug_close", guestfs_aug_close(handle)) }
    func augeasLoad() throws { try check("aug_load", guestfs_aug_load(handle)) }
    func augeasMatch(_ path: String) throws -> [String] { try stringList("aug_match(\(path))", guestfs_aug_match(handle, path)) }
    func augeasGet(_ path: String) throws -> String { try string("aug_get(\(path))", guestfs_aug_get(handle, path)) }
    func augeasSet(_ path: String, _ value: String) throws { try check("aug_set(\(path))", guestfs_aug_set(handle, path, value)) }
    @discardableResult
    func augeasRemove(_ path: String) throws -> Int { Int(try checkInt("aug_rm(\(path))", guestfs_aug_rm(handle, path))) }
    func augeasSave() throws { try check("aug_save", guestfs_aug_save(handle)) }

    // MARK: - Windows inspection

    /// "client", "server", … or "unknown" (Windows: from InstallationType).
    func inspectProductVariant(_ root: String) throws -> String { try string("inspect_get_product_variant", guestfs_inspect_get_product_variant(handle, root)) }
    /// The system root as a guest path, e.g. `/Windows`.
    func inspectWindowsSystemroot(_ root: String) throws -> String { try string("inspect_get_windows_systemroot", guestfs_inspect_get_windows_systemroot(handle, root)) }
    /// e.g. `ControlSet001`, the set `Select\Current` names.
    func inspectWindowsCurrentControlSet(_ root: String) throws -> String { try string("inspect_get_windows_current_control_set", guestfs_inspect_get_windows_current_control_set(handle, root)) }
    /// The guest path of the SYSTEM hive, with the case the guest's filesystem uses.
    func inspectWindowsSystemHive(_ root: String) throws -> String { try string("inspect_get_windows_system_hive", guestfs_inspect_get_windows_system_hive(handle, root)) }
    func inspectWindowsSoftwareHive(_ root: String) throws -> String { try string("inspect_get_windows_software_hive", guestfs_inspect_get_windows_software_hive(handle, root)) }

    /// Every filesystem libguestfs can see, device → type ("ntfs", "vfat", "BitLocker", "unknown"…).
    func listFilesystems() throws -> [String: String] { pairs(try stringList("list_filesystems", guestfs_list_filesystems(handle))) }

    /// `path` with each component in the case the filesystem actually uses (NTFS and FAT
    /// are case-insensitive to Windows but not through ntfs-3g or the Linux vfat driver).
    /// Components that do not exist yet are returned as given.
    func caseSensitivePath(_ path: String) throws -> String { try string("case_sensitive_path(\(path))", guestfs_case_sensitive_path(handle, path)) }

    /// Whether the filesystem holding `path` is mounted read-only (statvfs ST_RDONLY): ntfs-3g
    /// silently falls back to read-only for a hibernated or Fast Startup volume.
    func isReadOnlyMount(_ path: String) throws -> Bool {
        try statvfs(path) { $0.flag & Int64(ST_RDONLY) != 0 }
    }

    func umount(_ mountpoint: String) throws { try check("umount(\(mountpoint))", guestfs_umount(handle, mountpoint)) }

    /// Copies a host file into the guest.
    func upload(_ hostPath: String, to guestPath: String) throws { try check("upload(\(hostPath), \(guestPath))", guestfs_upload(handle, hostPath, guestPath)) }

    // MARK: - Hivex

    /// Opens a registry hive (a guest path) for reading or editing; one hive at a time per handle.
    func hivexOpen(_ path: String, write: Bool) throws { try check("hivex_open(\(path))", cguestfs_hivex_open(handle, path, write ? 1 : 0)) }
    func hivexClose() throws { try check("hivex_close", guestfs_hivex_close(handle)) }
    /// Writes the open hive back to the file it was opened from.
    func hivexCommit() throws { try check("hivex_commit", guestfs_hivex_commit(handle, nil)) }
    func hivexRoot() throws -> Int64 { try checkInt64("hivex_root", guestfs_hivex_root(handle)) }

    /// The child named `name` (case-insensitive, as Windows compares key names), or nil.
    func hivexChild(_ node: Int64, named name: String) throws -> Int64? {
        let child = try checkInt64("hivex_node_get_child(\(name))", guestfs_hivex_node_get_child(handle, node, name))
        return child == 0 ? nil : child
    }

    func hivexAddChild(_ node: Int64, named name: String) throws -> Int64 {
        try checkInt64("hivex_node_add_child(\(name))", guestfs_hivex_node_add_child(handle, node, name))
    }

    func hivexChildren(_ node: Int64) throws -> [Int64] {
        guard let list = guestfs_hivex_node_children(handle, node) else { throw error("hivex_node_children") }
        defer { guestfs_free_hivex_node_list(list) }
        return (0..<Int(list.pointee.len)).map { list.pointee.val[$0].hivex_node_h }
    }

    func hivexNodeName(_ node: Int64) throws -> String { try string("hivex_node_name", guestfs_hivex_node_name(handle, node)) }

    func hivexValues(_ node: Int64) throws -> [Int64] {
        guard let list = guestfs_hivex_node_values(handle, node) else { throw error("hivex_node_values") }
        defer { guestfs_free_hivex_value_list(list) }
        return (0..<Int(list.pointee.len)).map { list.pointee.val[$0].hivex_value_h }
    }

    /// The value named `key` ("" for the default value; case-insensitive), or nil.
    func hivexValue(_ node: Int64, named key: String) throws -> Int64? {
        let value = try checkInt64("hivex_node_get_value(\(key))", guestfs_hivex_node_get_value(handle, node, key))
        return value == 0 ? nil : value
    }

    func hivexValueKey(_ value: Int64) throws -> String { try string("hivex_value_key", guestfs_hivex_value_key(handle, value)) }
    func hivexValueType(_ value: Int64) throws -> Int64 { try checkInt64("hivex_value_type", guestfs_hivex_value_type(handle, value)) }

    func hivexValueData(_ value: Int64) throws -> Data {
        var size = 0
        guard let bytes = guestfs_hivex_value_value(handle, value, &size) else { throw error("hivex_value_value") }
        defer { free(bytes) }
        return Data(bytes: bytes, count: size)
    }

    /// Sets (creates or replaces) a value: `type` is the REG_* number, `data` the raw bytes.
    func hivexSetValue(_ node: Int64, key: String, type: Int64, data: Data) throws {
        // An empty value still needs a valid pointer.
        var bytes = [UInt8](data)
        if bytes.isEmpty { bytes = [0] }
        let count = data.count
        let status = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { guestfs_hivex_node_set_value(handle, node, key, type, $0.baseAddress, count) }
        }
        try check("hivex_node_set_value(\(key))", status)
    }

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
