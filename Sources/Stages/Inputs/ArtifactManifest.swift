import Foundation
import SystemSupport

/// An Artifact Manifest v1.0, as hypersdk's export writes it (`artifact-manifest.json`) and
/// as hyper2kvm's Python loader reads it: the VM an export tool
/// produced and the disk files it left on the host.
///
/// The same model is decoded from JSON and from YAML (`ArtifactManifest.parse`). Decoding
/// checks types only; `validate(file:)` checks the rules of the schema, and
/// `ArtifactManifestReader` checks the files the manifest names.
///
/// Keys the Python loader honours beyond Go's types (`profile`, `profiles_directory`,
/// `profile_overrides`, `hooks`, `libvirt_integration`) are decoded as free-form values so
/// that they can be reported; none of them is acted on (see `directiveFacts`).
public struct ArtifactManifest: Decodable, Sendable, Equatable {
    public static let supportedVersions: Set<String> = ["1.0"]

    public var manifestVersion: String
    public var source: Source?
    public var vm: VM?
    public var disks: [Disk]
    public var nics: [NIC]?
    public var notes: [String]?
    public var warnings: [Warning]?
    public var metadata: Metadata?
    public var pipeline: Pipeline?
    /// Free-form `{users, services, hostname, network}` for guest injection (not implemented).
    public var configuration: [String: JSONValue]?
    public var output: Output?
    public var options: Options?
    public var profile: JSONValue?
    public var profilesDirectory: String?
    public var profileOverrides: JSONValue?
    public var hooks: JSONValue?
    public var libvirtIntegration: JSONValue?

    /// Keys present in the document that neither the Go types nor the Python loader know,
    /// as JSON paths (`disks[0].encryption`). Filled by `parse`; they are facts, not errors,
    /// because hypersdk may add keys in a later 1.x without changing `manifest_version`.
    public var unrecognisedKeys: [String] = []

    enum CodingKeys: String, CodingKey, CaseIterable {
        case manifestVersion = "manifest_version"
        case source, vm, disks, nics, notes, warnings, metadata, pipeline, configuration, output, options
        case profile
        case profilesDirectory = "profiles_directory"
        case profileOverrides = "profile_overrides"
        case hooks
        case libvirtIntegration = "libvirt_integration"
    }

    public struct Source: Decodable, Sendable, Equatable {
        public var provider: String?
        public var vmID: String?
        public var vmName: String?
        public var datacenter: String?
        public var exportMethod: String?
        /// RFC 3339, kept as written.
        public var exportTimestamp: String?

        enum CodingKeys: String, CodingKey {
            case provider
            case vmID = "vm_id"
            case vmName = "vm_name"
            case datacenter
            case exportMethod = "export_method"
            case exportTimestamp = "export_timestamp"
        }
    }

    public struct VM: Decodable, Sendable, Equatable {
        public var cpu: Int?
        public var memGB: Int?
        /// `bios`, `uefi` or `unknown`.
        public var firmware: String?
        public var secureboot: Bool?
        /// `linux`, `windows` or `unknown`.
        public var osHint: String?
        public var osVersion: String?

        enum CodingKeys: String, CodingKey {
            case cpu
            case memGB = "mem_gb"
            case firmware, secureboot
            case osHint = "os_hint"
            case osVersion = "os_version"
        }
    }

    public struct Disk: Decodable, Sendable, Equatable {
        public var id: String
        /// `vmdk`, `qcow2`, `raw`, `vhd`, `vhdx` or `vdi`.
        public var sourceFormat: String
        /// What the exporter says the disk measures; hypersdk writes the capacity, not the
        /// stored size, so it is compared with both (see `ArtifactManifestReader`).
        public var bytes: Int64
        public var localPath: String
        /// `sha256:<64 lowercase hex>` of the whole file as stored.
        public var checksum: String?
        /// Lowest boots first. Go's `omitempty` drops the value 0 (see `ArtifactManifestBootOrder`).
        public var bootOrderHint: Int?
        public var label: String?
        /// `boot`, `data` or `unknown`; informational only.
        public var diskType: String?

        enum CodingKeys: String, CodingKey {
            case id
            case sourceFormat = "source_format"
            case bytes
            case localPath = "local_path"
            case checksum
            case bootOrderHint = "boot_order_hint"
            case label
            case diskType = "disk_type"
        }
    }

    public struct NIC: Decodable, Sendable, Equatable {
        public var id: String?
        public var mac: String?
        public var network: String?
    }

    public struct Warning: Decodable, Sendable, Equatable {
        public var stage: String?
        public var message: String?
        public var timestamp: String?
    }

    public struct Metadata: Decodable, Sendable, Equatable {
        public var hypersdkVersion: String?
        public var jobID: String?
        public var createdAt: String?
        public var tags: [String: String]?

        enum CodingKeys: String, CodingKey {
            case hypersdkVersion = "hypersdk_version"
            case jobID = "job_id"
            case createdAt = "created_at"
            case tags
        }
    }

    public struct Pipeline: Decodable, Sendable, Equatable {
        public var inspect: Inspect?
        public var fix: Fix?
        public var convert: Convert?
        public var validate: Validate?

        public struct Inspect: Decodable, Sendable, Equatable {
            public var enabled: Bool?
            public var collectGuestInfo: Bool?
            enum CodingKeys: String, CodingKey {
                case enabled
                case collectGuestInfo = "collect_guest_info"
            }
        }

        public struct Fix: Decodable, Sendable, Equatable {
            public var enabled: Bool?
            public var backup: Bool?
            public var printFstab: Bool?
            public var updateGrub: Bool?
            public var regenInitramfs: Bool?
            public var fstabMode: String?
            public var removeVMwareTools: Bool?
            enum CodingKeys: String, CodingKey {
                case enabled, backup
                case printFstab = "print_fstab"
                case updateGrub = "update_grub"
                case regenInitramfs = "regen_initramfs"
                case fstabMode = "fstab_mode"
                case removeVMwareTools = "remove_vmware_tools"
            }
        }

        public struct Convert: Decodable, Sendable, Equatable {
            public var enabled: Bool?
            public var compress: Bool?
            public var compressLevel: Int?
            enum CodingKeys: String, CodingKey {
                case enabled, compress
                case compressLevel = "compress_level"
            }
        }

        public struct Validate: Decodable, Sendable, Equatable {
            public var enabled: Bool?
            public var checkImageIntegrity: Bool?
            enum CodingKeys: String, CodingKey {
                case enabled
                case checkImageIntegrity = "check_image_integrity"
            }
        }
    }

    public struct Output: Decodable, Sendable, Equatable {
        public var directory: String?
        /// `qcow2`, `raw` or `vdi`.
        public var format: String?
        public var filename: String?
    }

    public struct Options: Decodable, Sendable, Equatable {
        public var dryRun: Bool?
        public var verbose: Int?
        public var report: Report?

        public struct Report: Decodable, Sendable, Equatable {
            public var enabled: Bool?
            public var path: String?
        }

        enum CodingKeys: String, CodingKey {
            case dryRun = "dry_run"
            case verbose, report
        }
    }
}
