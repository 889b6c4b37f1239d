import Yams
import Stages

/// How one configuration key is read. The table in `ConfigurationKeys.all` is the single
/// list of accepted keys: the loader, `config check` and the README reference derive from it.
struct ConfigurationKey: Sendable {
    enum Status: Sendable {
        case implemented
        /// Known, but starting with an active value fails: never silently ignored.
        case notImplemented(String)
        /// Accepted by the earlier implementation, replaced here; always an error.
        case replaced(String)
    }

    let name: String
    let aliases: [String]
    let type: String
    let summary: String
    let status: Status
    let apply: @Sendable (ConfigurationValue, inout Configuration) throws(ConfigurationValue.Mismatch) -> Void
    /// For `notImplemented` keys: whether this value asks for the missing behaviour.
    let isActive: @Sendable (ConfigurationValue) -> Bool

    init(_ name: String, aliases: [String] = [], type: String, _ summary: String, status: Status = .implemented,
         isActive: @escaping @Sendable (ConfigurationValue) -> Bool = { _ in true },
         apply: @escaping @Sendable (ConfigurationValue, inout Configuration) throws(ConfigurationValue.Mismatch) -> Void) {
        self.name = name
        self.aliases = aliases
        self.type = type
        self.summary = summary
        self.status = status
        self.isActive = isActive
        self.apply = apply
    }
}

enum ConfigurationKeys {
    static let fileStableTimeoutReason =
        "replaced by file_stable_seconds: hyper2kvm never gives up on a file that is still being written"

    static let all: [ConfigurationKey] = [
        .init("command", aliases: ["cmd"], type: "daemon|convert|local|ova|ovf|vhd|raw|ami",
              "what `hyper2kvm --config FILE` runs") { value, config throws(ConfigurationValue.Mismatch) in
            config.command = Configuration.Command(rawValue: try value.oneOf(Configuration.Command.allCases.map(\.rawValue)))
        },
        .init("daemon", type: "bool", "true requires command: daemon (kept for seed compatibility)") { value, config throws(ConfigurationValue.Mismatch) in
            if try value.bool(), config.command == nil { config.command = .daemon }
        },
        .init("input", aliases: ["vmdk", "ova", "ovf", "vhd", "raw", "ami"], type: "path",
              "source for a one-shot command") { value, config throws(ConfigurationValue.Mismatch) in
            config.input = try value.path()
        },
        .init("watch_dir", type: "path", "queue directory the daemon watches") { value, config throws(ConfigurationValue.Mismatch) in
            config.watchDir = try value.path()
        },
        .init("output_dir", type: "path", "where converted VMs are published, one directory each") { value, config throws(ConfigurationValue.Mismatch) in
            config.outputDir = try value.path()
        },
        .init("workdir", aliases: ["work_dir"], type: "path", "per-job scratch space (same filesystem as output_dir is fastest)") { value, config throws(ConfigurationValue.Mismatch) in
            config.workDir = try value.path()
        },
        .init("state_dir", type: "path", "where the journal lives") { value, config throws(ConfigurationValue.Mismatch) in
            config.stateDir = try value.path()
        },
        .init("flatten", type: "bool", "must stay true: outputs are always standalone images and the source is never modified",
              status: .notImplemented("flatten: false (upstream modified the source in place; hyper2kvm never does)"),
              isActive: { $0.isFalseOrNull }) { value, _ throws(ConfigurationValue.Mismatch) in
            _ = try value.bool()
        },
        .init("out_format", type: "qcow2|raw", "output disk format") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.outFormat = try value.oneOf(["qcow2", "raw"])
        },
        .init("compress", type: "bool", "zstd-compressed qcow2 clusters") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.compress = try value.bool()
        },
        .init("compress_level", type: "int 1-9", "compression level") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.compressLevel = try value.int(in: 1...9)
        },
        .init("checksum", type: "bool", "SHA-256 of every output, verified before it is trusted") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.checksum = try value.bool()
        },
        .init("enable_recovery", type: "bool", "must stay true: the journal is what makes jobs resumable",
              status: .notImplemented("enable_recovery: false (the journal cannot be turned off)"),
              isActive: { $0.isFalseOrNull }) { value, _ throws(ConfigurationValue.Mismatch) in
            _ = try value.bool()
        },
        .init("fstab_mode", type: "stabilize-all|minimal|bypath-only|noop", "how /etc/fstab device names are rewritten") { value, config throws(ConfigurationValue.Mismatch) in
            let raw = try value.oneOf(ConversionOptions.FstabMode.allCases.map(\.rawValue))
            config.conversion.fstabMode = ConversionOptions.FstabMode(rawValue: raw) ?? .stabilizeAll
        },
        .init("regen_initramfs", type: "bool", "rebuild the guest initramfs with virtio drivers") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.regenInitramfs = try value.bool()
        },
        .init("update_grub", type: "bool", "regenerate the guest's grub configuration") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.updateGrub = try value.bool()
        },
        .init("no_grub", type: "bool", "skip all bootloader changes") { value, config throws(ConfigurationValue.Mismatch) in
            if try value.bool() { config.conversion.updateGrub = false }
        },
        .init("fix_guest", type: "bool", "apply guest OS fixes (false: copy the disk only)") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.fixGuest = try value.bool()
        },
        .init("remove_vmware_tools", type: "bool", "uninstall VMware tools from the guest (Linux: the packages; Windows: services disabled, uninstall at first boot)") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.removeVMwareTools = try value.bool()
        },
        .init("emit_domain_xml", type: "bool", "write domain.xml beside the disk") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.emitDomainXML = try value.bool()
        },
        .init("vm_name", type: "string", "name of the VM (default: from the source)") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.vmName = try value.string()
        },
        .init("vm_memory", aliases: ["memory"], type: "int MiB", "memory of the VM (default: from the source, else 2048)") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.vmMemoryMiB = try value.int(in: 16...(16 << 20))
        },
        .init("vm_vcpus", aliases: ["vcpus"], type: "int", "vCPUs of the VM (default: from the source, else 2)") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.vmVcpus = try value.int(in: 1...1024)
        },
        .init("vm_uefi", aliases: ["uefi"], type: "bool", "force UEFI firmware (default: from the source)") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.vmUEFI = try value.bool()
        },
        .init("libvirt_network", type: "string", "libvirt network the NICs join (default: default)") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.libvirtNetwork = try value.string()
            try LibvirtKeyCheck.networkAndBridge(config.conversion)
        },
        .init("libvirt_integration", type: "bool", "define each published VM in libvirt (the register stage)") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.libvirtIntegration = try value.bool()
        },
        .init("libvirt_uri", type: "string", "libvirt connection URI (default: qemu:///system)") { value, config throws(ConfigurationValue.Mismatch) in
            let uri = try value.string()
            guard uri.contains(":") else { throw ConfigurationValue.Mismatch(expected: "a libvirt URI such as qemu:///system") }
            config.conversion.libvirtURI = uri
        },
        .init("libvirt_bridge", type: "string", "host bridge the NICs join instead of libvirt_network") { value, config throws(ConfigurationValue.Mismatch) in
            let bridge = try value.string()
            guard !bridge.isEmpty else { throw ConfigurationValue.Mismatch(expected: "a bridge name") }
            config.conversion.libvirtBridge = bridge
            try LibvirtKeyCheck.networkAndBridge(config.conversion)
        },
        .init("libvirt_pool", type: "string", "storage pool the disks are imported into (default: none, the domain uses the published files)") { value, config throws(ConfigurationValue.Mismatch) in
            let pool = try value.string()
            guard !pool.isEmpty else { throw ConfigurationValue.Mismatch(expected: "a storage pool name") }
            config.conversion.libvirtPool = pool
        },
        .init("libvirt_autostart", type: "bool", "start the domain when the host boots") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.libvirtAutostart = try value.bool()
        },
        .init("libvirt_overwrite", type: "bool", "replace a shut-off domain of the same name that this job did not define") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.libvirtOverwrite = try value.bool()
        },
        .init("max_concurrent", aliases: ["max_concurrent_jobs"], type: "int ≥ 1", "jobs converted at once") { value, config throws(ConfigurationValue.Mismatch) in
            config.maxConcurrent = try value.int(in: 1...64)
        },
        .init("parallel_processing", type: "bool", "convert the disks of a multi-disk job in parallel") { value, config throws(ConfigurationValue.Mismatch) in
            config.parallelProcessing = try value.bool()
        },
        .init("file_stable_seconds", type: "number", "seconds a file's size and mtime must stay unchanged (and no writer open) before it is taken") { value, config throws(ConfigurationValue.Mismatch) in
            config.fileStableSeconds = try value.number(min: 0)
        },
        .init("file_stable_timeout", type: "-", "", status: .replaced(fileStableTimeoutReason)) { _, _ throws(ConfigurationValue.Mismatch) in },
        .init("archive_processed", type: "bool", "move converted sources to .processed/<date>/") { value, config throws(ConfigurationValue.Mismatch) in
            config.archiveProcessed = try value.bool()
        },
        .init("enable_deduplication", type: "bool", "report a source whose content was already converted as a duplicate") { value, config throws(ConfigurationValue.Mismatch) in
            config.enableDeduplication = try value.bool()
        },
        .init("deduplication_use_md5", type: "-", "", status: .replaced("duplicates are found by device/inode and SHA-256; MD5 is not used")) { _, _ throws(ConfigurationValue.Mismatch) in },
        .init("retry_policy", type: "mapping", "enabled, max_retries, retry_delay (s), backoff_multiplier") { value, config throws(ConfigurationValue.Mismatch) in
            config.retryPolicy = try RetryPolicyReader.read(value)
        },
        .init("shutdown_grace_seconds", type: "number", "on SIGTERM, how long running stages may finish before they are interrupted") { value, config throws(ConfigurationValue.Mismatch) in
            config.shutdownGraceSeconds = try value.number(min: 0)
        },
        .init("space_check_seconds", type: "number", "how often a job waiting for disk space checks for it") { value, config throws(ConfigurationValue.Mismatch) in
            config.spaceCheckSeconds = try value.number(min: 0.1)
        },
        .init("manifest_allowed_dirs", type: "list of paths",
              "directories an Artifact Manifest's local_path may point into besides the queue it was dropped in (default: none)") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.manifestAllowedDirectories = try value.absolutePaths()
        },
        .init("log_file", type: "path", "also write the log to this file") { value, config throws(ConfigurationValue.Mismatch) in
            config.logFile = try value.path()
        },
        .init("verbose", type: "int 0-3", "log verbosity") { value, config throws(ConfigurationValue.Mismatch) in
            config.verbose = try value.int(in: 0...3)
        },
        .init("notifications", type: "mapping", "webhook/e-mail notifications", status: .notImplemented("notifications"),
              isActive: { value in value.node.mapping?["enabled"]?.bool == true }) { _, _ throws(ConfigurationValue.Mismatch) in },
        .init("use_v2v", type: "bool", "delegate conversion to virt-v2v", status: .notImplemented("use_v2v: hyper2kvm converts itself and does not call virt-v2v"),
              isActive: { !$0.isFalseOrNull }) { value, _ throws(ConfigurationValue.Mismatch) in _ = try value.bool() },
        // Upstream's name for parallel disk copies; true turns parallel_processing on, false
        // leaves it as parallel_processing says (the seed's example sets both to true).
        .init("v2v_parallel", type: "bool", "true: same as parallel_processing: true (hyper2kvm copies disks itself, without virt-v2v)") { value, config throws(ConfigurationValue.Mismatch) in
            if try value.bool() { config.parallelProcessing = true }
        },
        .init("v2v_concurrency", type: "int", "how many disks of one job are copied at once when parallel_processing is on (default 2)") { value, config throws(ConfigurationValue.Mismatch) in
            config.parallelDiskCopies = try value.int(in: 1...64)
        },
        .init("win_virtio", type: "bool", "Windows guests: inject virtio drivers from virtio_win so they boot on virtio (off: SATA disk, e1000e NIC)") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.winVirtio = try value.bool()
        },
        .init("win_hyperv", type: "bool", "Windows guests: Hyper-V enlightenments in domain.xml") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.winHyperv = try value.bool()
        },
        .init("virtio_win", type: "path", "virtio-win ISO or directory with the Windows drivers (default: $VIRTIO_WIN)") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.virtioWin = try value.path()
        },
        .init("dry_run", type: "bool", "plan without writing", status: .notImplemented("dry_run"),
              isActive: { !$0.isFalseOrNull }) { value, _ throws(ConfigurationValue.Mismatch) in _ = try value.bool() },
        .init("workers", type: "-", "", status: .replaced("use max_concurrent (jobs) and parallel_processing (disks)")) { _, _ throws(ConfigurationValue.Mismatch) in },
    ]

    static func lookup(_ name: String) -> ConfigurationKey? {
        all.first { $0.name == name || $0.aliases.contains(name) }
    }

    static var allNames: [String] { all.flatMap { [$0.name] + $0.aliases } }
}

/// `libvirt_network` and `libvirt_bridge` exclude each other, whichever comes first.
enum LibvirtKeyCheck {
    static func networkAndBridge(_ options: ConversionOptions) throws(ConfigurationValue.Mismatch) {
        if let conflict = options.libvirtNetworkConflict {
            throw ConfigurationValue.Mismatch(expected: "only one of libvirt_network and libvirt_bridge (\(conflict))")
        }
    }
}

enum RetryPolicyReader {
    static func read(_ value: ConfigurationValue) throws(ConfigurationValue.Mismatch) -> Configuration.RetryPolicy {
        guard let mapping = value.node.mapping else {
            throw ConfigurationValue.Mismatch(expected: "a mapping with enabled, max_retries, retry_delay, backoff_multiplier")
        }
        var policy = Configuration.RetryPolicy()
        for (keyNode, node) in mapping {
            let sub = ConfigurationValue(node: node)
            switch keyNode.string {
            case "enabled": policy.enabled = try sub.bool()
            case "max_retries": policy.maxRetries = try sub.int(in: 0...100)
            case "retry_delay": policy.retryDelaySeconds = try sub.number(min: 0)
            case "backoff_multiplier": policy.backoffMultiplier = try sub.number(min: 1)
            default:
                throw ConfigurationValue.Mismatch(expected: "only enabled, max_retries, retry_delay, backoff_multiplier (got '\(keyNode.string ?? "?")')")
            }
        }
        return policy
    }
}
