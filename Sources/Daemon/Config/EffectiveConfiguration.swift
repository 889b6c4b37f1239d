/// The configuration as `config check` prints it: every key with its effective value.
public enum EffectiveConfiguration {
    public static func render(_ c: Configuration) -> String {
        let o = c.conversion
        let rows: [(String, String)] = [
            ("command", c.command?.rawValue ?? "(none)"),
            ("input", c.input ?? "(none)"),
            ("watch_dir", c.watchDir), ("output_dir", c.outputDir), ("workdir", c.workDir), ("state_dir", c.stateDir),
            ("out_format", o.outFormat), ("compress", "\(o.compress)"), ("compress_level", "\(o.compressLevel)"), ("copy_chunk_mib", "\(o.copyChunkMiB)"),
            ("checksum", "\(o.checksum)"), ("fix_guest", "\(o.fixGuest)"), ("use_v2v", "\(o.useV2V)"), ("fstab_mode", o.fstabMode.rawValue),
            ("regen_initramfs", "\(o.regenInitramfs)"), ("update_grub", "\(o.updateGrub)"),
            ("emit_domain_xml", "\(o.emitDomainXML)"), ("vm_name", o.vmName ?? "(from source)"),
            ("vm_memory", o.vmMemoryMiB.map(String.init) ?? "(from source)"),
            ("vm_vcpus", o.vmVcpus.map(String.init) ?? "(from source)"),
            ("vm_uefi", o.vmUEFI.map { "\($0)" } ?? "(from source)"), ("libvirt_network", o.libvirtNetwork),
            ("libvirt_integration", "\(o.libvirtIntegration)"), ("libvirt_uri", o.libvirtURI),
            ("libvirt_bridge", o.libvirtBridge ?? "(none: NICs on libvirt_network)"),
            ("libvirt_pool", o.libvirtPool ?? "(none: the published files)"),
            ("libvirt_autostart", "\(o.libvirtAutostart)"), ("libvirt_overwrite", "\(o.libvirtOverwrite)"),
            ("remove_vmware_tools", "\(o.removeVMwareTools)"), ("win_virtio", "\(o.winVirtio)"),
            ("win_hyperv", "\(o.winHyperv)"), ("virtio_win", o.virtioWin ?? "(none)"), ("dry_run", "\(o.dryRun)"),
            ("max_concurrent", "\(c.maxConcurrent)"), ("parallel_processing", "\(c.parallelProcessing)"),
            ("v2v_concurrency", "\(c.parallelDiskCopies)"),
            ("file_stable_seconds", "\(c.fileStableSeconds)"), ("archive_processed", "\(c.archiveProcessed)"),
            ("enable_deduplication", "\(c.enableDeduplication)"),
            ("retry_policy", "enabled=\(c.retryPolicy.enabled) max_retries=\(c.retryPolicy.maxRetries) "
                + "retry_delay=\(c.retryPolicy.retryDelaySeconds) backoff_multiplier=\(c.retryPolicy.backoffMultiplier)"),
            ("shutdown_grace_seconds", "\(c.shutdownGraceSeconds)"), ("space_check_seconds", "\(c.spaceCheckSeconds)"),
            ("manifest_allowed_dirs", o.manifestAllowedDirectories.isEmpty ? "(none: only the queue)"
                : o.manifestAllowedDirectories.joined(separator: ", ")),
            ("log_file", c.logFile ?? "(stderr only)"), ("verbose", "\(c.verbose)"),
            ("notifications", c.notifications.summary), ("stalled_after_seconds", "\(c.stalledAfterSeconds)"),
        ]
        let header = c.sources.isEmpty ? "# defaults" : "# from " + c.sources.joined(separator: ", ")
        return ([header] + rows.map { "\($0.0): \($0.1)" }).joined(separator: "\n")
    }
}
