extension ArtifactManifest {
    /// The configuration as this manifest may change it.
    ///
    /// The operator's configuration (`ConversionOptions`) decides how a job is converted; a
    /// manifest is a file someone dropped in a queue. So a manifest may only **switch off**
    /// guest fixes it explicitly disables, never switch anything on or redirect output:
    ///
    /// | manifest key | effect |
    /// |---|---|
    /// | `pipeline.fix.enabled: false` | `fixGuest = false` |
    /// | `pipeline.fix.regen_initramfs: false` | `regenInitramfs = false` |
    /// | `pipeline.fix.update_grub: false` | `updateGrub = false` |
    /// | `pipeline.fix.remove_vmware_tools: false` | `removeVMwareTools = false` |
    /// | `pipeline.fix.fstab_mode: noop` | `fstabMode = .noop` |
    ///
    /// Everything else (`true` values, other fstab modes, `pipeline.inspect/convert/validate`,
    /// `output`, `options`, `configuration`, `profile*`, `hooks`, `libvirt_integration`) is
    /// not applied and is listed by `directiveFacts`. In particular hooks are never run:
    /// they would execute commands named by whoever can write to the queue.
    public func restricting(_ options: ConversionOptions) -> ConversionOptions {
        var restricted = options
        guard let fix = pipeline?.fix else { return restricted }
        if fix.enabled == false { restricted.fixGuest = false }
        if fix.regenInitramfs == false { restricted.regenInitramfs = false }
        if fix.updateGrub == false { restricted.updateGrub = false }
        if fix.removeVMwareTools == false { restricted.removeVMwareTools = false }
        if fix.fstabMode == ConversionOptions.FstabMode.noop.rawValue { restricted.fstabMode = .noop }
        return restricted
    }

    /// One line per manifest directive: applied (a disable) or not applied, and why.
    public var directiveFacts: [String] {
        var facts: [String] = []
        func ignored(_ key: String, _ why: String) { facts.append("manifest \(key) not applied: \(why)") }
        let configWins = "the daemon configuration decides"

        if let inspect = pipeline?.inspect {
            if inspect.enabled == false { ignored("pipeline.inspect.enabled: false", "guest inspection always runs (it finds the boot disk and the OS to fix)") }
            if inspect.collectGuestInfo != nil { ignored("pipeline.inspect.collect_guest_info", "not implemented") }
        }
        if let fix = pipeline?.fix {
            if fix.enabled == false { facts.append("manifest pipeline.fix.enabled: false applied: guest fixes are off for this job") }
            if fix.regenInitramfs == false { facts.append("manifest pipeline.fix.regen_initramfs: false applied") }
            if fix.updateGrub == false { facts.append("manifest pipeline.fix.update_grub: false applied") }
            if fix.removeVMwareTools == false { facts.append("manifest pipeline.fix.remove_vmware_tools: false applied") }
            for (key, value) in [("enabled", fix.enabled), ("regen_initramfs", fix.regenInitramfs),
                                 ("update_grub", fix.updateGrub), ("remove_vmware_tools", fix.removeVMwareTools)] where value == true {
                ignored("pipeline.fix.\(key): true", "a manifest may only disable fixes; \(configWins)")
            }
            if let mode = fix.fstabMode {
                if mode == ConversionOptions.FstabMode.noop.rawValue {
                    facts.append("manifest pipeline.fix.fstab_mode: noop applied: /etc/fstab is left as is")
                } else {
                    ignored("pipeline.fix.fstab_mode: \(mode)", "only 'noop' (a disable) is taken from a manifest; \(configWins)")
                }
            }
            if fix.backup != nil { ignored("pipeline.fix.backup", "the source is never modified, so there is nothing to back up") }
            if fix.printFstab != nil { ignored("pipeline.fix.print_fstab", "the fix report records fstab changes") }
        }
        if let convert = pipeline?.convert {
            if convert.enabled == false { ignored("pipeline.convert.enabled: false", "conversion is the job; it always runs") }
            if convert.compress != nil || convert.compressLevel != nil { ignored("pipeline.convert.compress", configWins) }
        }
        if let validate = pipeline?.validate, validate.enabled != nil || validate.checkImageIntegrity != nil {
            ignored("pipeline.validate", "images are always checked and outputs always hashed")
        }
        if let output, output.directory != nil || output.format != nil || output.filename != nil {
            ignored("output", "output_dir and out_format come from the daemon configuration")
        }
        if let options {
            if options.dryRun == true { ignored("options.dry_run: true", "the queue converts what it is given") }
            if options.verbose != nil { ignored("options.verbose", configWins) }
            if options.report != nil { ignored("options.report", "metadata.json is written with every conversion") }
        }
        if let configuration, !configuration.isEmpty {
            ignored("configuration (\(configuration.keys.sorted().joined(separator: ", ")))", "guest injection is not implemented")
        }
        if profile != nil || profilesDirectory != nil || profileOverrides != nil {
            ignored("profile", "profiles are not implemented; \(configWins)")
        }
        if hooks != nil {
            ignored("hooks", "hooks from a manifest are never run (they would execute commands from the queue)")
        }
        if libvirtIntegration != nil {
            ignored("libvirt_integration", "domain.xml is written but no domain or pool is defined")
        }
        return facts
    }
}
