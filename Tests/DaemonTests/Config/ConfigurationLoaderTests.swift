import Foundation
import Testing
import TestSupport
@testable import Daemon

@Suite struct ConfigurationLoaderTests {
    let scratch: Scratch
    var directory: URL { scratch.url }

    init() throws {
        scratch = try Scratch("config")
    }

    func file(_ name: String, _ text: String) throws -> String {
        let url = directory.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    func errors(_ files: [String]) -> [ConfigurationError] {
        do {
            _ = try ConfigurationLoader.load(files: files)
            return []
        } catch let error as ConfigurationErrors {
            return error.errors
        } catch {
            Issue.record("unexpected error \(error)")
            return []
        }
    }

    @Test func everyImplementedKeyParses() throws {
        let path = try file("all.yaml", """
            command: daemon
            daemon: true
            watch_dir: /q
            output_dir: /o
            workdir: /w
            state_dir: /s
            flatten: true
            out_format: qcow2
            compress: true
            compress_level: 6
            copy_chunk_mib: 512
            checksum: true
            enable_recovery: true
            fstab_mode: bypath-only
            regen_initramfs: false
            update_grub: false
            no_grub: false
            fix_guest: true
            remove_vmware_tools: false
            emit_domain_xml: true
            vm_name: web01
            vm_memory: 4096
            vm_vcpus: 4
            vm_uefi: true
            libvirt_network: br0
            max_concurrent: 3
            parallel_processing: true
            file_stable_seconds: 2.5
            archive_processed: false
            enable_deduplication: false
            retry_policy: {enabled: true, max_retries: 5, retry_delay: 10, backoff_multiplier: 1.5}
            shutdown_grace_seconds: 30
            space_check_seconds: 5
            log_file: /tmp/x.log
            verbose: 2
            http_listen: unix:/run/hyper2kvm/http.sock
            notifications: {enabled: false}
            stalled_after_seconds: 600
            use_v2v: false
            v2v_parallel: false
            v2v_concurrency: 1
            libvirt_uri: qemu:///system
            libvirt_pool: vms
            libvirt_autostart: false
            libvirt_overwrite: false
            input: /tmp/in.vmdk
            win_virtio: false
            win_hyperv: false
            virtio_win: /tmp
            libvirt_integration: false
            dry_run: false
            manifest_allowed_dirs: [/srv/exports, /mnt/nfs]
            """)
        let c = try ConfigurationLoader.load(files: [path])
        #expect(c.command == .daemon)
        #expect(c.conversion.manifestAllowedDirectories == ["/srv/exports", "/mnt/nfs"])
        #expect(c.watchDir == "/q" && c.outputDir == "/o" && c.workDir == "/w" && c.stateDir == "/s")
        #expect(c.conversion.compress && c.conversion.compressLevel == 6)
        #expect(c.conversion.copyChunkMiB == 512 && c.conversion.copyChunkBytes == 512 << 20)
        #expect(c.conversion.fstabMode == .bypathOnly)
        #expect(!c.conversion.regenInitramfs && !c.conversion.updateGrub)
        #expect(c.conversion.vmName == "web01" && c.conversion.vmMemoryMiB == 4096 && c.conversion.vmVcpus == 4)
        #expect(c.conversion.vmUEFI == true && c.conversion.libvirtNetwork == "br0")
        #expect(c.maxConcurrent == 3 && c.parallelProcessing && c.fileStableSeconds == 2.5)
        #expect(!c.archiveProcessed && !c.enableDeduplication)
        #expect(c.retryPolicy == .init(enabled: true, maxRetries: 5, retryDelaySeconds: 10, backoffMultiplier: 1.5))
        #expect(c.shutdownGraceSeconds == 30 && c.logFile == "/tmp/x.log" && c.verbose == 2)
        #expect(!c.notifications.enabled && c.stalledAfterSeconds == 600)
        #expect(c.httpListen == .unixSocket(path: "/run/hyper2kvm/http.sock"))
    }

    @Test func everyKeyInTheTableIsExercisedByTheTestAbove() throws {
        // Keeps the table and the documentation test in step: a new key needs a line above.
        let source = try String(contentsOfFile: #filePath, encoding: .utf8)
        for key in ConfigurationKeys.all {
            if case .replaced = key.status { continue }
            #expect(source.contains("\n    \(key.name):") || source.contains("        \(key.name):"), "key \(key.name) untested")
        }
    }

    @Test func libvirtBridgeIsReadInsteadOfANetwork() throws {
        let path = try file("bridge.yaml", """
            command: daemon
            libvirt_integration: true
            libvirt_bridge: br0
            """)
        let c = try ConfigurationLoader.load(files: [path])
        #expect(c.conversion.libvirtBridge == "br0" && c.conversion.libvirtIntegration)
    }

    @Test func manifestAllowedDirsAreAbsolutePathsAndNoneByDefault() throws {
        #expect(try ConfigurationLoader.load(files: [try file("none.yaml", "command: daemon\n")]).conversion.manifestAllowedDirectories.isEmpty)
        let one = try file("one.yaml", "command: daemon\nmanifest_allowed_dirs: /srv/exports\n")
        #expect(try ConfigurationLoader.load(files: [one]).conversion.manifestAllowedDirectories == ["/srv/exports"])
        let relative = try file("relative.yaml", "command: daemon\nmanifest_allowed_dirs: [exports]\n")
        let found = errors([relative])
        #expect(found.count == 1)
        #expect(found.first?.description.contains("manifest_allowed_dirs") == true && found.first?.description.contains("absolute") == true,
                "\(found)")
        let rendered = EffectiveConfiguration.render(try ConfigurationLoader.load(files: [one]))
        #expect(rendered.contains("manifest_allowed_dirs: /srv/exports"))
    }

    @Test func unknownKeyNamesFileKeyAndNearestKey() throws {
        let path = try file("typo.yaml", "command: daemon\nwach_dir: /q\n")
        let found = errors([path])
        #expect(found.count == 1)
        #expect(found.first?.description == "\(path): key 'wach_dir': unknown key (did you mean 'watch_dir'?)")
    }

    @Test func wrongTypeNamesTheExpectedType() throws {
        let path = try file("type.yaml", "max_concurrent: many\ncompress: sometimes\nfstab_mode: fastest\n")
        let text = errors([path]).map(\.description)
        #expect(text.contains("\(path): key 'max_concurrent': expected an integer from 1 to 64, got 'many'"))
        #expect(text.contains("\(path): key 'compress': expected a boolean (true/false), got 'sometimes'"))
        #expect(text.contains("\(path): key 'fstab_mode': expected one of stabilize-all, minimal, bypath-only, noop, got 'fastest'"))
    }

    @Test func cmdIsAnAliasOfCommandAndDashesAreUnderscores() throws {
        let path = try file("alias.yaml", "cmd: daemon\nwatch-dir: /queue\n")
        let c = try ConfigurationLoader.load(files: [path])
        #expect(c.command == .daemon && c.watchDir == "/queue")
    }

    @Test func laterFilesWin() throws {
        let first = try file("a.yaml", "command: daemon\nmax_concurrent: 2\ncompress: true\n")
        let second = try file("b.yaml", "max_concurrent: 4\n")
        let c = try ConfigurationLoader.load(files: [first, second])
        #expect(c.maxConcurrent == 4 && c.conversion.compress && c.command == .daemon)
        #expect(c.sources == [first, second])
    }

    @Test func keysAcceptedButNotImplementedFailWhenActive() throws {
        let path = try file("prod.yaml", "command: daemon\nwin_virtio: true\ndry_run: true\nflatten: false\n")
        let text = errors([path]).map(\.description)
        #expect(!text.contains { $0.contains("win_virtio") })
        // dry_run is implemented (a preflight): accepted, and it reaches the stages.
        #expect(!text.contains { $0.contains("dry_run") })
        #expect(try ConfigurationLoader.load(files: [try file("dry.yaml", "command: daemon\ndry_run: true\n")]).conversion.dryRun)
        #expect(text.contains { $0.contains("key 'flatten': accepted but not implemented yet") })
    }

    /// The seed's "Production Configuration" example (docs: daemon mode), verbatim.
    static let seedProductionConfiguration = """
        command: daemon
        daemon: true

        # Directories
        watch_dir: /var/lib/hyper2kvm/queue
        output_dir: /var/lib/hyper2kvm/output
        workdir: /var/lib/hyper2kvm/work

        # Output format
        flatten: true
        out_format: qcow2
        compress: true
        compress_level: 6

        # Recovery and reliability
        enable_recovery: true
        checksum: true

        # Performance (for large VMs)
        parallel_processing: true
        v2v_parallel: true
        v2v_concurrency: 2

        # Guest OS fixes
        fstab_mode: stabilize-all
        regen_initramfs: true
        update_grub: true

        # Windows-specific
        win_virtio: true
        win_hyperv: true

        # Logging
        log_file: /var/log/hyper2kvm/daemon.log
        verbose: 2

        # Domain XML generation
        emit_domain_xml: true
        vm_memory: 4096
        vm_vcpus: 2
        vm_uefi: true

        """

    @Test func theSeedProductionConfigurationLoadsAsIs() throws {
        let path = try file("production.yaml", Self.seedProductionConfiguration)
        let c = try ConfigurationLoader.load(files: [path])
        #expect(c.conversion.winVirtio && c.conversion.winHyperv)
        #expect(c.parallelProcessing && c.parallelDiskCopies == 2)
        #expect(c.conversion.compress && c.conversion.compressLevel == 6 && c.conversion.vmUEFI == true)

        let drivers = directory.appendingPathComponent("virtio-win")
        try FileManager.default.createDirectory(at: drivers, withIntermediateDirectories: true)
        let withDrivers = try file("drivers.yaml", "virtio_win: \(drivers.path)\n")
        #expect(try ConfigurationLoader.load(files: [path, withDrivers]).conversion.virtioWin == drivers.path)
    }

    @Test func aMissingVirtioWinPathIsAnError() throws {
        let path = try file("drivers.yaml", "win_virtio: true\nvirtio_win: /nonexistent/virtio-win.iso\n")
        let text = errors([path]).map(\.description)
        #expect(text.contains { $0.contains("virtio_win") && $0.contains("/nonexistent/virtio-win.iso does not exist") })
    }

    @Test func replacedKeysSayWhatReplacesThem() throws {
        let path = try file("old.yaml", "file_stable_timeout: 30\n")
        #expect(errors([path]).first?.message == ConfigurationKeys.fileStableTimeoutReason)
    }

    @Test func malformedAndNonMappingFilesAreClearErrors() throws {
        let broken = try file("broken.yaml", "command: [daemon\n")
        #expect(errors([broken]).first?.description.hasPrefix("\(broken): not valid YAML") == true)
        let list = try file("list.yaml", "- a\n- b\n")
        #expect(errors([list]).first?.description == "\(list): the configuration must be a mapping of key: value (or KEY=VALUE lines)")
        #expect(errors([directory.appendingPathComponent("missing.yaml").path]).first?.message.hasPrefix("cannot read") == true)
    }

    @Test func duplicateKeyThroughAnAliasIsAnError() throws {
        let path = try file("dup.yaml", "command: daemon\ncmd: daemon\n")
        #expect(errors([path]).first?.message.contains("more than once") == true)
    }

    @Test func seedMinimalConfigurationLoads() throws {
        let path = try file("minimal.yaml", "command: daemon\ndaemon: true\nwatch_dir: /incoming\noutput_dir: /output\n")
        let c = try ConfigurationLoader.load(files: [path])
        #expect(c.command == .daemon && c.watchDir == "/incoming" && c.outputDir == "/output")
    }

    @Test func oneShotCommandNeedsAnInput() throws {
        let path = try file("ova.yaml", "command: ova\n")
        #expect(errors([path]).first?.message.contains("needs an input") == true)
        let ok = try file("ova2.yaml", "command: ova\nova: /x/vm.ova\n")
        #expect(try ConfigurationLoader.load(files: [ok]).input == "/x/vm.ova")
    }
}
