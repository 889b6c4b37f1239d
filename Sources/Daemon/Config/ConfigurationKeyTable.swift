import Stages

/// Every accepted configuration key, in the order the README lists them. The README's
/// configuration table is generated from this table (`ConfigurationReference`); a test
/// fails when the two differ.
extension ConfigurationKeys {
    static let all: [ConfigurationKey] = [
        .init("command", aliases: ["cmd"], type: "daemon|convert|local|ova|ovf|vhd|raw|ami", default: "—",
              "what `hyper2kvm --config FILE` runs.") { value, config throws(ConfigurationValue.Mismatch) in
            config.command = Configuration.Command(rawValue: try value.oneOf(Configuration.Command.allCases.map(\.rawValue)))
        },
        .init("daemon", type: "bool", default: "false", "true requires command: daemon (kept for seed compatibility).") { value, config throws(ConfigurationValue.Mismatch) in
            if try value.bool(), config.command == nil { config.command = .daemon }
        },
        .init("input", aliases: ["vmdk", "ova", "ovf", "vhd", "raw", "ami"], type: "path", default: "—",
              "source for a one-shot command.") { value, config throws(ConfigurationValue.Mismatch) in
            config.input = try value.path()
        },
        .init("watch_dir", type: "path", default: "`$HOME/queue`", "queue directory the daemon watches.") { value, config throws(ConfigurationValue.Mismatch) in
            config.watchDir = try value.path()
        },
        .init("output_dir", type: "path", default: "`$HOME/output`", "where converted VMs are published, one directory each.") { value, config throws(ConfigurationValue.Mismatch) in
            config.outputDir = try value.path()
        },
        .init("workdir", aliases: ["work_dir"], type: "path", default: "`$HOME/work`", "per-job scratch space (same filesystem as output_dir is fastest).") { value, config throws(ConfigurationValue.Mismatch) in
            config.workDir = try value.path()
        },
        .init("state_dir", type: "path", default: "`$HOME/state`", "where the journal lives.") { value, config throws(ConfigurationValue.Mismatch) in
            config.stateDir = try value.path()
        },
        .init("flatten", type: "bool", default: "true", "must stay true: outputs are always standalone images and the source is never modified.",
              status: .notImplemented("flatten: false (upstream modified the source in place; hyper2kvm never does)"),
              isActive: { $0.isFalseOrNull }) { value, _ throws(ConfigurationValue.Mismatch) in
            _ = try value.bool()
        },
        .init("out_format", type: "qcow2|raw", default: "qcow2", "output disk format.") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.outFormat = try value.oneOf(["qcow2", "raw"])
        },
        .init("compress", type: "bool", default: "false", "zstd-compressed qcow2 clusters.") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.compress = try value.bool()
        },
        .init("compress_level", type: "int 1-9", default: "3 (qemu-img cannot set zstd levels: any other value is reported)", "compression level.") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.compressLevel = try value.int(in: 1...9)
        },
        copyChunkMiBKey,
        .init("checksum", type: "bool", default: "true", "SHA-256 of every output, verified before it is trusted.") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.checksum = try value.bool()
        },
        .init("enable_recovery", type: "bool", default: "true", "must stay true: the journal is what makes jobs resumable.",
              status: .notImplemented("enable_recovery: false (the journal cannot be turned off)"),
              isActive: { $0.isFalseOrNull }) { value, _ throws(ConfigurationValue.Mismatch) in
            _ = try value.bool()
        },
        .init("fstab_mode", type: "stabilize-all|minimal|bypath-only|noop", default: "stabilize-all", """
                  how /etc/fstab and /etc/crypttab device names are rewritten to `UUID=` (else `PARTUUID=`, \
                  `LABEL=`). `stabilize-all`: every bus-bound name (`/dev/sdX`, `hdX`, `xvdX`, `vdX`, NVMe, cciss, \
                  controller-bound `/dev/disk/by-path` and `by-id` links). `minimal`: only the names the converted \
                  VM's virtio hardware cannot resolve: the same without `/dev/vdX` (already a virtio name). \
                  `bypath-only`: only the by-path/by-id links. `noop`: nothing. No mode touches `UUID=`, `LABEL=`, \
                  `PARTUUID=`, `/dev/disk/by-uuid`, LVM (`/dev/mapper/…`, `/dev/VG/LV`, dm/lvm by-id links) or md \
                  (`/dev/mdN`, md by-id links). `minimal` is not faster than `stabilize-all`: the time goes into \
                  launching the appliance, not into the rewrite. The kernel command line (`root=`, `resume=`) is \
                  always made stable.
                  """) { value, config throws(ConfigurationValue.Mismatch) in
            let raw = try value.oneOf(ConversionOptions.FstabMode.allCases.map(\.rawValue))
            config.conversion.fstabMode = ConversionOptions.FstabMode(rawValue: raw) ?? .stabilizeAll
        },
        .init("regen_initramfs", type: "bool", default: "true", """
                  add the virtio drivers to the guest's initramfs configuration and rebuild, with the guest's own \
                  generator, each image a boot loader entry loads (grub `menuentry` `initrd` lines, BLS \
                  `/boot/loader/entries`, paths taken relative to the filesystem grub reads, never derived from the \
                  generator's usual naming) whose image lacks them (an image that already holds them and their \
                  dependencies, as Debian's default `MODULES=most` does, is kept and `fix_skipped` says so).
                  """) { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.regenInitramfs = try value.bool()
        },
        .init("update_grub", type: "bool", default: "true", """
                  let the guest's own `update-grub`/`grub2-mkconfig` regenerate `grub.cfg` when the in-place edit \
                  is not enough (an entry we could not resolve, a BLS layout, entries that are not the installed \
                  kernels, no `search`); when it is, the tool is not run and `fix_skipped` says why.
                  """) { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.updateGrub = try value.bool()
        },
        .init("no_grub", type: "bool", default: "false", "skip all bootloader changes.") { value, config throws(ConfigurationValue.Mismatch) in
            if try value.bool() { config.conversion.updateGrub = false }
        },
        .init("fix_guest", type: "bool", default: "true", "apply guest OS fixes (false: copy the disk only).") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.fixGuest = try value.bool()
        },
        .init("remove_vmware_tools", type: "bool", default: "false", """
                  uninstall VMware tools from the guest (Linux: the packages, through the guest's dpkg/rpm; \
                  Windows: the services disabled, uninstall staged for first boot).
                  """) { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.removeVMwareTools = try value.bool()
        },
        .init("emit_domain_xml", type: "bool", default: "true", "write domain.xml beside the disk.") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.emitDomainXML = try value.bool()
        },
        .init("vm_name", type: "string", default: "from the source", "name of the VM.") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.vmName = try value.string()
        },
        .init("vm_memory", aliases: ["memory"], type: "int MiB", default: "from the source, else \(DomainXMLWriter.defaultMemoryMiB)", "memory of the VM.") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.vmMemoryMiB = try value.int(in: 16...(16 << 20))
        },
        .init("vm_vcpus", aliases: ["vcpus"], type: "int 1-1024", default: "from the source, else \(DomainXMLWriter.defaultVcpus)", "vCPUs of the VM.") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.vmVcpus = try value.int(in: 1...1024)
        },
        .init("vm_uefi", aliases: ["uefi"], type: "bool", default: "from the source", "force UEFI firmware.") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.vmUEFI = try value.bool()
        },
        .init("libvirt_network", type: "string", default: "default", "libvirt network the NICs join.") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.libvirtNetwork = try value.string()
            try LibvirtKeyCheck.networkAndBridge(config.conversion)
        },
        .init("libvirt_integration", type: "bool", default: "false", "define each published VM in libvirt (the `register` stage; see below).") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.libvirtIntegration = try value.bool()
        },
        .init("libvirt_uri", type: "string", default: "qemu:///system", "libvirt connection URI.") { value, config throws(ConfigurationValue.Mismatch) in
            let uri = try value.string()
            guard uri.contains(":") else { throw ConfigurationValue.Mismatch(expected: "a libvirt URI such as qemu:///system") }
            config.conversion.libvirtURI = uri
        },
        .init("libvirt_bridge", type: "string", default: "—", """
                  host bridge the NICs join instead of `libvirt_network` (the two exclude each other unless the \
                  network is `default`).
                  """) { value, config throws(ConfigurationValue.Mismatch) in
            let bridge = try value.string()
            guard !bridge.isEmpty else { throw ConfigurationValue.Mismatch(expected: "a bridge name") }
            config.conversion.libvirtBridge = bridge
            try LibvirtKeyCheck.networkAndBridge(config.conversion)
        },
        .init("libvirt_pool", type: "string", default: "— (the domain uses the published files)", "storage pool the disks are imported into as volumes.") { value, config throws(ConfigurationValue.Mismatch) in
            let pool = try value.string()
            guard !pool.isEmpty else { throw ConfigurationValue.Mismatch(expected: "a storage pool name") }
            config.conversion.libvirtPool = pool
        },
        .init("libvirt_autostart", type: "bool", default: "false", "start the domain when the host boots.") { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.libvirtAutostart = try value.bool()
        },
        .init("libvirt_overwrite", type: "bool", default: "false", """
                  replace the definition of a shut-off domain of the same name that this job did not define (its \
                  storage is never deleted).
                  """) { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.libvirtOverwrite = try value.bool()
        },
        .init("max_concurrent", aliases: ["max_concurrent_jobs"], type: "int 1-64", default: "1", "jobs converted at once.") { value, config throws(ConfigurationValue.Mismatch) in
            config.maxConcurrent = try value.int(in: 1...64)
        },
        .init("parallel_processing", type: "bool", default: "false", "convert the disks of a multi-disk job in parallel.") { value, config throws(ConfigurationValue.Mismatch) in
            config.parallelProcessing = try value.bool()
        },
        .init("file_stable_seconds", type: "number", default: "5", """
                  seconds a file's size and mtime must stay unchanged (and no writer open) before it is taken.
                  """) { value, config throws(ConfigurationValue.Mismatch) in
            config.fileStableSeconds = try value.number(min: 0)
        },
        .init("file_stable_timeout", type: "-", "", status: .replaced(fileStableTimeoutReason)) { _, _ throws(ConfigurationValue.Mismatch) in },
        .init("archive_processed", type: "bool", default: "true", "move converted sources to .processed/<date>/.") { value, config throws(ConfigurationValue.Mismatch) in
            config.archiveProcessed = try value.bool()
        },
        .init("enable_deduplication", type: "bool", default: "true", "report a source whose content was already converted as a duplicate.") { value, config throws(ConfigurationValue.Mismatch) in
            config.enableDeduplication = try value.bool()
        },
        .init("deduplication_use_md5", type: "-", "", status: .replaced("duplicates are found by device/inode and SHA-256; MD5 is not used")) { _, _ throws(ConfigurationValue.Mismatch) in },
        .init("retry_policy", type: "mapping", default: "enabled, 3 retries, 300 s, ×2", "enabled, max_retries, retry_delay (s), backoff_multiplier.") { value, config throws(ConfigurationValue.Mismatch) in
            config.retryPolicy = try RetryPolicyReader.read(value)
        },
        .init("shutdown_grace_seconds", type: "number", default: "60", "on SIGTERM, how long running stages may finish before they are interrupted.") { value, config throws(ConfigurationValue.Mismatch) in
            config.shutdownGraceSeconds = try value.number(min: 0)
        },
        .init("space_check_seconds", type: "number", default: "30", """
                  how often a job waiting for disk space checks whether space returned. Before writing, `convert` \
                  asks `qemu-img measure` what the disks will take (plus 1/64 and a 64 MiB reserve; what other \
                  conversions running in the daemon are about to write counts as taken; a resumed copy \
                  subtracts what its earlier attempt already wrote) and a gzip'd AMI is \
                  planned on its declared size and decompressed under a byte counter; a job that does not fit \
                  waits until that estimate is free on that filesystem (the journal says "needs N bytes, M free"), \
                  and one that could never fit (more than the whole filesystem) fails at once. After a plain \
                  ENOSPC (no estimate) it resumes at ≥ 64 MiB and twice what was free when it failed.
                  """) { value, config throws(ConfigurationValue.Mismatch) in
            config.spaceCheckSeconds = try value.number(min: 0.1)
        },
        .init("manifest_allowed_dirs", type: "list of paths", default: "none",
              """
                  absolute directories an Artifact Manifest's `local_path` may point into, besides the directory \
                  the manifest was dropped in (the queue; for `hyper2kvm convert MANIFEST`, the manifest's own \
                  directory). Paths are judged on their real path (symlinks resolved) and again on the opened \
                  file; any other path fails the job with "… is not allowed (outside the queue and \
                  manifest_allowed_dirs)" and nothing else about it.
                  """) { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.manifestAllowedDirectories = try value.absolutePaths()
        },
        .init("log_file", type: "path", default: "stderr only", "also write the log to this file.") { value, config throws(ConfigurationValue.Mismatch) in
            config.logFile = try value.path()
        },
        .init("verbose", type: "int 0-3", default: "1", "log verbosity.") { value, config throws(ConfigurationValue.Mismatch) in
            config.verbose = try value.int(in: 0...3)
        },
        // Notifications and stall detection (ConfigurationKeyTable+Notifications.swift).
        notificationsKey, stalledAfterSecondsKey,
    ] + endpointKeys + [
        .init("use_v2v", type: "bool", default: "false", """
                  virt-v2v converts the guest instead of hyper2kvm's own fixer: stage `v2v` runs \
                  `virt-v2v-in-place` on a qcow2 overlay over each source disk (stage `fix` is skipped), and \
                  hyper2kvm copies, describes, hashes and publishes as always. virt-v2v never opens the \
                  dropped files itself, only our overlays over descriptors we opened and checked. Starting \
                  is refused when virt-v2v-in-place, nbdkit or qemu-nbd is missing (Debian: \
                  `apt-get install virt-v2v nbdkit libnbd-bin`). See "Two guest converters" below.
                  """) { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.useV2V = try value.bool()
        },
        // Upstream's name for parallel disk copies; true turns parallel_processing on, false
        // leaves it as parallel_processing says (the seed's example sets both to true).
        .init("v2v_parallel", type: "bool", default: "false", """
                  upstream's name: `true` turns `parallel_processing` on (`false` leaves it as \
                  `parallel_processing` says). The disks are copied by hyper2kvm with either converter: \
                  virt-v2v 2.2 converts in place and has no parallel copies of its own.
                  """) { value, config throws(ConfigurationValue.Mismatch) in
            if try value.bool() { config.parallelProcessing = true }
        },
        .init("v2v_concurrency", type: "int 1-64", default: "2", """
                  disks of one job copied at once when `parallel_processing` is on (by hyper2kvm, with \
                  either converter).
                  """) { value, config throws(ConfigurationValue.Mismatch) in
            config.parallelDiskCopies = try value.int(in: 1...64)
        },
        .init("win_virtio", type: "bool", default: "false", """
                  Windows guests: inject the virtio drivers from `virtio_win` (boot-start storage driver, netkvm, \
                  the rest staged for first boot) so the guest boots on virtio. No driver for the guest's version \
                  and architecture fails the job, naming what was looked for and where. Off: the domain keeps SATA \
                  disks and an e1000e NIC, and says why. Linux guests ignore the Windows keys.
                  """) { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.winVirtio = try value.bool()
        },
        .init("win_hyperv", type: "bool", default: "false", """
                  Windows guests: Hyper-V enlightenments (relaxed, vapic, spinlocks, vpindex, runtime, synic, \
                  stimer, reset, frequencies) and the Hyper-V clock in domain.xml.
                  """) { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.winHyperv = try value.bool()
        },
        .init("virtio_win", type: "path", default: "`$VIRTIO_WIN`", """
                  a virtio-win ISO or unpacked directory (layout `viostor/<os>/<arch>/…`); must exist when given.
                  """) { value, config throws(ConfigurationValue.Mismatch) in
            config.conversion.virtioWin = try value.path()
        },
        dryRunKey,
        .init("workers", type: "-", "", status: .replaced("use max_concurrent (jobs) and parallel_processing (disks)")) { _, _ throws(ConfigurationValue.Mismatch) in },
    ]
}
