import Foundation
import SystemSupport

/// The `metadata.json` document published beside a converted VM: where it came from, what
/// the source said, what was found and changed in the guest, what was produced, and how long
/// each stage took. Keys are snake_case and sorted, the file is pretty-printed UTF-8.
///
/// Schema `hyper2kvm.metadata/1` (the README's "metadata.json" table says the same):
///
/// - `schema`: `"hyper2kvm.metadata/1"`. A change that removes or retypes a key bumps the number.
/// - `created_at`: ISO 8601 UTC time the document was written.
/// - `tool`: `name`, `version` (hyper2kvm), `qemu_img_version`, `libguestfs_version` (absent when
///   the guest was not opened).
/// - `source`: `path` of the dropped file, `kind` (vmdk, ova, ovf, vhd, vhdx, raw, ami, qcow2,
///   manifest), `format` (qemu driver of the disk payload), `size` in bytes, `sparse_sha256`
///   (`SparseDigest` of the file, not a SHA-256 of it; absent when checksums are off),
///   `sha256` (plain SHA-256: only in documents of jobs hashed by earlier versions),
///   `identity` (`device`, `inode`, `size`, `mtime`).
/// - `vm`: what the OVF/manifest said: `name`, `vcpus`, `memory_mib`, `firmware` (bios, uefi,
///   unknown), `nics[]` (`mac`, `network`); absent values are omitted.
/// - `inspection`: free-form object from the guest inspection (os type, distro, version, arch,
///   root device…); absent when the guest was not inspected.
/// - `windows`: Windows guests only: `system_root`, `current_control_set`, `product_variant`,
///   `firmware`, `disk_bus` and `disk_bus_reason`, `nic_model`, `storage_driver`,
///   `driver_source`, `files_copied[]`, `staged_for_first_boot[]`, `registry_changes[]`
///   (`hive`, `key`, `value`, `before`, `after`; absent before: created, absent after: deleted).
/// - `fixes[]`: every change made in the guest: `area` (fstab, grub, initramfs, network…),
///   `file`, `before`, `after`.
/// - `fix_skipped[]`: each part of the guest fix that did not run or was not needed: `area`,
///   `reason`. `fix_warnings[]`: notes for the operator. `fix_steps[]`: `step`, `seconds`, in
///   order. All three are absent when the guest was not opened.
/// - Linux guests fixed by hyper2kvm: `boot_firmware` (`firmware` bios/uefi, `decided_by`
///   vm_uefi/source/disk/default, `reasons[]`: the ESP, EFI binaries, BIOS boot partition, MBR
///   boot code, grub platform the decision rests on); `boot_check` (`ensured`, `entries[]`
///   with `config`, `title`, `kernel`, `initramfs[]`, `problems[]`, `passed[]`: the boot chain
///   read back from the converted disks); `result` (`converted` or `converted, boot not
///   ensured`) and `boot_not_ensured[]` (each reason, also in `fix_warnings`).
/// - `outputs[]`: `name` (file name in the published directory), `path`, `format`, `size` in
///   bytes, `sha256` (absent when checksums are off), `virtual_size` (disks only).
/// - `stages[]`: in run order, as the journal recorded them: `name`, `status` (`completed` or
///   `skipped`), `reason` (why skipped), `started_at`, `finished_at` (ISO 8601 UTC), `seconds`.
public struct ConversionMetadata: Codable, Sendable, Equatable {
    public static let currentSchema = "hyper2kvm.metadata/1"

    public var schema: String = ConversionMetadata.currentSchema
    public var createdAt: Date
    public var tool: Tool
    public var source: Source
    public var vm: VM
    public var inspection: [String: JSONValue]?
    public var fixes: [Fix]
    public var fixSkipped: [SkippedGuestFix]?
    public var fixWarnings: [String]?
    public var fixSteps: [GuestFixReport.StepDuration]?
    public var outputs: [Output]
    public var stages: [Stage]
    /// The libvirt domain domain.xml describes (and `register` defines, when enabled).
    public var domain: Domain?
    /// Windows guests: drivers, registry changes, disk bus and firmware (`WindowsFixReport`).
    public var windows: [String: JSONValue]?
    /// Linux guests: the firmware domain.xml boots, who decided it, and why.
    public var bootFirmware: FirmwareDecision?
    /// Linux guests: the boot chain as read back from the converted disks.
    public var bootCheck: BootChainCheck?
    /// "converted", or "converted, boot not ensured" when `boot_not_ensured` lists reasons;
    /// absent when the guest was not fixed by hyper2kvm.
    public var result: String?
    public var bootNotEnsured: [String]?

    public init(createdAt: Date, tool: Tool, source: Source, vm: VM, inspection: [String: JSONValue]? = nil,
                fixes: [Fix] = [], outputs: [Output] = [], stages: [Stage] = [], windows: [String: JSONValue]? = nil) {
        self.createdAt = createdAt
        self.tool = tool
        self.source = source
        self.vm = vm
        self.inspection = inspection
        self.fixes = fixes
        self.outputs = outputs
        self.stages = stages
        self.windows = windows
    }

    enum CodingKeys: String, CodingKey {
        case schema, tool, source, vm, inspection, fixes, outputs, stages, domain, windows
        case createdAt = "created_at"
        case fixSkipped = "fix_skipped", fixWarnings = "fix_warnings", fixSteps = "fix_steps"
        case bootFirmware = "boot_firmware", bootCheck = "boot_check", result, bootNotEnsured = "boot_not_ensured"
    }

    public struct Tool: Codable, Sendable, Equatable {
        public var name: String
        public var version: String
        public var qemuImgVersion: String
        public var libguestfsVersion: String?
        /// Who converted the guest for KVM (hyper2kvm's fixer, or virt-v2v with
        /// `use_v2v: true`); nil when no guest conversion ran (`fix_guest: false`).
        public var guestConverter: GuestConverter?

        public init(name: String = "hyper2kvm", version: String, qemuImgVersion: String, libguestfsVersion: String? = nil,
                    guestConverter: GuestConverter? = nil) {
            self.name = name
            self.version = version
            self.qemuImgVersion = qemuImgVersion
            self.libguestfsVersion = libguestfsVersion
            self.guestConverter = guestConverter
        }

        enum CodingKeys: String, CodingKey {
            case name, version
            case qemuImgVersion = "qemu_img_version"
            case libguestfsVersion = "libguestfs_version"
            case guestConverter = "guest_converter"
        }
    }

    public struct GuestConverter: Codable, Sendable, Equatable {
        public var name: String
        public var version: String

        public init(name: String, version: String) {
            self.name = name
            self.version = version
        }
    }

    /// The identity the job recorded for its source (design: Identity), so a reader can tell
    /// which exact file was converted.
    public struct SourceIdentity: Codable, Sendable, Equatable {
        public var device: UInt64
        public var inode: UInt64
        public var size: UInt64
        /// Modification time, seconds since the epoch (fractional).
        public var mtime: Double

        public init(device: UInt64, inode: UInt64, size: UInt64, mtime: Double) {
            self.device = device
            self.inode = inode
            self.size = size
            self.mtime = mtime
        }
    }

    public struct Source: Codable, Sendable, Equatable {
        public var path: String
        public var kind: InputKind
        public var format: String
        public var size: UInt64
        public var sha256: String?
        /// `SparseDigest` of the source (see `SourceDigest` for why not a plain SHA-256).
        public var sparseSHA256: String?
        public var identity: SourceIdentity?

        public init(path: String, kind: InputKind, format: String, size: UInt64, sha256: String? = nil,
                    identity: SourceIdentity? = nil, sparseSHA256: String? = nil) {
            self.path = path
            self.kind = kind
            self.format = format
            self.size = size
            self.sha256 = sha256
            self.identity = identity
            self.sparseSHA256 = sparseSHA256
        }

        enum CodingKeys: String, CodingKey {
            case path, kind, format, size, sha256, identity
            case sparseSHA256 = "sparse_sha256"
        }
    }

    public struct VM: Codable, Sendable, Equatable {
        public struct NIC: Codable, Sendable, Equatable {
            public var mac: String?
            public var network: String?
            public init(mac: String? = nil, network: String? = nil) {
                self.mac = mac
                self.network = network
            }
        }

        public var name: String
        public var vcpus: Int?
        public var memoryMiB: Int?
        public var firmware: Firmware
        public var nics: [NIC]
        /// Where the settings came from, when not from a descriptor the source carries
        /// (a Hyper-V export, whose `.vmcx` is not read).
        public var settingsSource: String?

        public init(name: String, vcpus: Int? = nil, memoryMiB: Int? = nil, firmware: Firmware = .unknown, nics: [NIC] = [],
                    settingsSource: String? = nil) {
            self.name = name
            self.vcpus = vcpus
            self.memoryMiB = memoryMiB
            self.firmware = firmware
            self.nics = nics
            self.settingsSource = settingsSource
        }

        static let hyperVSettingsSource = "Hyper-V export: name from the folder, vCPUs and memory from the defaults, "
            + "firmware from the first disk's partition table (the .vmcx is not read)"

        /// The source's own description, before any configuration override.
        public init(_ description: VMDescription) {
            self.init(name: description.name, vcpus: description.vcpus, memoryMiB: description.memoryMiB,
                      firmware: description.firmware,
                      nics: description.nics.map { NIC(mac: $0.mac, network: $0.network) },
                      settingsSource: description.origin == "hyperv" ? Self.hyperVSettingsSource : nil)
        }

        enum CodingKeys: String, CodingKey {
            case name, vcpus, firmware, nics
            case memoryMiB = "memory_mib"
            case settingsSource = "settings_source"
        }
    }

    public struct Domain: Codable, Sendable, Equatable {
        public var name: String
        public var uuid: String
        public init(name: String, uuid: String) {
            self.name = name
            self.uuid = uuid
        }
    }

    /// One change made inside the guest, as the fix stage recorded it.
    public typealias Fix = GuestFixChange

    public struct Output: Codable, Sendable, Equatable {
        public var name: String
        public var path: String
        public var format: String
        public var size: UInt64
        /// Absent when checksums are off.
        public var sha256: String?
        public var virtualSize: UInt64?

        public init(name: String, path: String, format: String, size: UInt64, sha256: String?, virtualSize: UInt64? = nil) {
            self.name = name
            self.path = path
            self.format = format
            self.size = size
            self.sha256 = sha256
            self.virtualSize = virtualSize
        }

        enum CodingKeys: String, CodingKey {
            case name, path, format, size, sha256
            case virtualSize = "virtual_size"
        }
    }

    /// One stage as the journal recorded it; times are copied verbatim from the journal
    /// (ISO 8601 UTC), so metadata and `hyper2kvm history` always agree.
    public typealias Stage = StageTiming
}

/// Encodes and writes `metadata.json`.
public enum MetadataWriter {
    /// The document's bytes: sorted keys, pretty-printed, ISO 8601 UTC times with
    /// milliseconds, trailing newline. Equal metadata gives equal bytes.
    public static func encode(_ metadata: ConversionMetadata) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(Timestamp.format(date))
        }
        var data = try encoder.encode(metadata)
        data.append(0x0A)
        return data
    }

    /// Reads a document written by ``encode(_:)``.
    public static func decode(_ data: Data, file: String? = nil) throws -> ConversionMetadata {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            guard let date = Timestamp.parse(text) else {
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                        debugDescription: "not an ISO 8601 time: \(text)"))
            }
            return date
        }
        do {
            return try decoder.decode(ConversionMetadata.self, from: data)
        } catch {
            throw StageError(.badInput, file: file, "not a hyper2kvm metadata document: \(error)")
        }
    }

    /// Writes the document to `url` and fsyncs it (the caller renames it into place).
    public static func write(_ metadata: ConversionMetadata, to url: URL) throws {
        try DurableFile.write(try encode(metadata), to: url)
    }

}
