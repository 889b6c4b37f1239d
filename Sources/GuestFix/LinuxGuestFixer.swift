import Foundation
import Stages
import Synchronization

/// The fix-guest stage for Linux: one libguestfs appliance over all of a job's disks
/// inspects the guest, then stabilises fstab/crypttab, removes MAC pinning and stale device
/// caches (and VMware tools when asked), fixes the boot loader and rebuilds the initramfs
/// with virtio drivers, recording every change. A Windows guest found by the same
/// inspection is handed to `WindowsGuestFixer` on the same appliance (one launch per job).
///
/// - Important: it writes to the disks it is given. The pipeline passes qcow2 overlays
///   over the sources (`GuestFixOverlay`), never the sources themselves.
struct LinuxGuestFixer: Sendable {
    /// Appliance memory: initramfs rebuilds (compressing ~100 MB images) need more than the
    /// default; virt-v2v uses 2× default and qemu reached 2.0 GB RSS in our run.
    var applianceMemoryMiB: Int32
    var applianceCPUs: Int32
    /// Called on the fixing thread at named points (`started`, `launched`, `inspected`): the guest-fix
    /// child's test hook crashes or stalls there (`GuestFixTestHook`); nil in production.
    var checkpoint: (@Sendable (String) -> Void)?
    /// Runs the initramfs generator's command in the guest; nil runs it through the
    /// appliance. Only tests of phony guests (no libc to run a real generator) set it.
    var runGenerator: (@Sendable (GuestfsHandle, [String]) throws -> Void)?

    init(applianceMemoryMiB: Int32 = 2048,
         applianceCPUs: Int32 = Int32(min(4, max(1, ProcessInfo.processInfo.activeProcessorCount)))) {
        self.applianceMemoryMiB = applianceMemoryMiB
        self.applianceCPUs = applianceCPUs
    }

    /// Fixes the guest on `disks` (in the VM's disk order, formats explicit).
    ///
    /// The libguestfs calls block for minutes, so they run on a dedicated thread, not on
    /// the cooperative pool. Cancellation is honoured between steps (a running guest tool
    /// such as update-initramfs is not interrupted): the pipeline therefore runs this in a
    /// child process (`IsolatedGuestFixer`), which a cancellation stops at once.
    func fix(disks: [(path: URL, format: String)], options: ConversionOptions,
             identifier: String) async throws -> GuestFixReport {
        let drives = disks.map { Drive(path: $0.path.path, format: $0.format) }
        let cancellation = CancellationFlag()
        let settings = self
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<GuestFixReport, any Error>) in
                let thread = Thread {
                    // Named from the thread itself: only then does the kernel (top -H, /proc) see it.
                    Thread.current.name = "h2k-guestfs"
                    // Every signal unblocked: libguestfs forks the appliance's qemu and its
                    // recovery process from this thread, and they inherit its mask, which is
                    // the pool thread's that started it (SIGTERM blocked). Blocked, the process
                    // group's SIGTERM that stops a fix (a shutdown) would not reach them.
                    var none = sigset_t()
                    sigemptyset(&none)
                    pthread_sigmask(SIG_SETMASK, &none, nil)
                    continuation.resume(with: Result {
                        try settings.fixBlocking(drives: drives, options: options, identifier: identifier,
                                                 cancellation: cancellation)
                    })
                }
                thread.start()
            }
        } onCancel: {
            cancellation.cancel()
        }
    }

    struct Drive: Sendable {
        var path: String
        var format: String
    }

    /// Set from any thread by task cancellation, read by the fixing thread between steps.
    final class CancellationFlag: Sendable {
        private let cancelled = Mutex(false)
        func cancel() { cancelled.withLock { $0 = true } }
        var isCancelled: Bool { cancelled.withLock { $0 } }
    }

    private func fixBlocking(drives: [Drive], options: ConversionOptions, identifier: String,
                             cancellation: CancellationFlag) throws -> GuestFixReport {
        guard !drives.isEmpty else { throw StageError(.badInput, "fix-guest: no disks given") }
        checkpoint?("started")
        let diskPaths = drives.map(\.path)
        var durations: [GuestFixReport.StepDuration] = []
        func timed<T>(_ step: String, _ body: () throws -> T) throws -> T {
            if cancellation.isCancelled { throw CancellationError() }
            let start = ContinuousClock.now
            defer {
                let elapsed = ContinuousClock.now - start
                durations.append(.init(step: step, seconds: Double(elapsed.components.seconds)
                                           + Double(elapsed.components.attoseconds) / 1e18))
            }
            return try body()
        }

        let guest = try GuestfsHandle(identifier: identifier, memoryMiB: applianceMemoryMiB,
                                      cpus: options.regenInitramfs ? applianceCPUs : 1)
        for drive in drives {
            try guest.addDrive(drive.path, format: drive.format)
        }
        try timed("launch") { try guest.launch() }
        checkpoint?("launched")

        var warnings: [String] = []
        /// Trims, unmounts and shuts the appliance down, for either kind of guest.
        func finish(trimming mountpoints: [String]) throws {
            try timed("finish") {
                // Discarded blocks stay out of the overlay and the final image; not every
                // filesystem supports it, and a failure costs only space.
                for mountpoint in mountpoints {
                    do { try guest.fstrim(mountpoint) } catch { warnings.append("fstrim \(mountpoint): \(error)") }
                }
                try guest.umountAll()
                try guest.shutdown()
            }
        }
        var mounted: [String] = []
        var encryptedRoot: [String] = []
        var devices = GuestDeviceMap(devices: [])
        var plan = GuestMounter.Plan(mountpoints: [:], fstab: [], warnings: [])
        var firmware: FirmwareDecision?
        let inspection = try timed("inspect") { () throws -> GuestInspection in
            var inspection: GuestInspection
            do {
                inspection = try GuestInspector.inspect(guest, disks: diskPaths)
            } catch let error as StageError {
                // A LUKS root hides the operating system from inspection: without its key nothing
                // inside can be fixed, but the disks still convert, and the report says so.
                // blkid, not list_filesystems: libguestfs leaves LUKS volumes out of the latter.
                let candidates = ((try? guest.listPartitions()) ?? []) + ((try? guest.listDevices()) ?? [])
                let encrypted = candidates.filter { (try? guest.blkid($0))?["TYPE"] == "crypto_LUKS" }.sorted()
                if !encrypted.isEmpty {
                    encryptedRoot = encrypted
                    return GuestInspection.encrypted(rootDevice: encrypted[0])
                }
                // BitLocker or a damaged registry hive deserve their own explanation.
                throw WindowsInspector.explainInspectionFailure(guest, error: error, disk: diskPaths.first) ?? error
            }
            guard inspection.type == "linux" || inspection.type == "windows" else {
                throw StageError(.unsupportedGuest, file: diskPaths.first,
                                 "the guest is \(inspection.type) (\(inspection.productName)); only Linux and Windows guests are fixed")
            }
            guard inspection.type == "linux" else { return inspection }
            devices = try GuestBootFacts.devices(guest, root: inspection.rootDevice)
            // The disk of a partition root, else the first: where the firmware starts.
            let rootDisk = devices.devices.first { $0.device == inspection.rootDevice }?.disk ?? 0
            let bootDisk = devices.devices.first { $0.disk == rootDisk && $0.partition == nil }?.device ?? "/dev/sda"
            var facts = try GuestBootFacts.partitionFacts(guest, devices: devices, bootDisk: bootDisk)
            let mounter = GuestMounter(guest: guest, devices: devices)
            let mounting = try mounter.mount(root: inspection.rootDevice, inspected: inspection.mountpoints)
            plan = mounting.plan
            mounted = mounting.mounted
            warnings += plan.warnings
            inspection.mountpoints = plan.mountpoints
            try GuestBootFacts.addGuestFacts(guest, fstab: plan.fstab, to: &facts)
            firmware = FirmwareDecider.decide(facts)
            inspection.installedKernels = try InitramfsRegenerator.installedKernels(guest)
            return inspection
        }
        checkpoint?("inspected")

        if !encryptedRoot.isEmpty {
            let reason = "the root filesystem is encrypted (LUKS on \(encryptedRoot.joined(separator: ", "))): a key is needed to open it, "
                + "so nothing inside the guest was fixed or checked; the disks were converted as they are"
            try finish(trimming: [])
            return GuestFixReport(inspection: inspection, skipped: [SkippedGuestFix(area: "guest", reason: reason)],
                                  warnings: warnings + [reason], durations: durations, bootNotEnsured: [reason])
        }

        if inspection.type == "windows" {
            // Same appliance, same report; the Windows fixer mounts what it needs itself.
            let (windows, windowsWarnings) = try WindowsGuestFixer().fix(
                guest: guest, inspection: inspection, options: options, disk: diskPaths.first,
                step: { name, body in try timed(name, body) })
            warnings += windowsWarnings
            try finish(trimming: ["/"])
            return GuestFixReport(inspection: inspection, warnings: warnings, durations: durations, windows: windows)
        }

        let editor = GuestFileEditor(guest: guest)
        var skipped: [SkippedGuestFix] = []
        var notEnsured: [String] = []
        let knownDistro = inspection.isKnownLinuxDistro
        if !knownDistro {
            warnings.append("distro '\(inspection.distro)' (\(inspection.productName)) is not one hyper2kvm knows: "
                + "only the generic file fixes were applied; guest tools (grub, initramfs) were not run")
        }
        if inspection.rootDevice.hasPrefix("/dev/md") {
            notEnsured.append("the root filesystem is on md RAID (\(inspection.rootDevice)): hyper2kvm does not check that the "
                + "initramfs assembles the array (mdadm and its config inside) on virtio")
        }
        let resolver = try StableDeviceResolver(guest: guest, mountpoints: inspection.mountpoints)

        try timed("fstab") {
            for table in [FstabRewriter.Table.fstab, .crypttab] {
                warnings += try FstabRewriter(table: table, mode: options.fstabMode).apply(editor: editor, resolver: resolver)
            }
            if options.fstabMode == .noop { skipped.append(SkippedGuestFix(area: "fstab", reason: "fstab_mode is noop")) }
        }
        try timed("network") {
            skipped += try NetworkPinningRemover().apply(guest: guest, editor: editor)
            skipped += try CloudInitNetworkGuard().apply(editor: editor)
        }
        try timed("leftovers") {
            let remover = HypervisorLeftoversRemover(removeVMwareTools: options.removeVMwareTools && knownDistro)
            warnings += try remover.apply(guest: guest, editor: editor, inspection: inspection)
        }
        try timed("bootloader") {
            let fixer = BootloaderFixer(runGuestTool: options.updateGrub && knownDistro)
            let (bootSkipped, bootWarnings) = try fixer.apply(guest: guest, editor: editor, resolver: resolver,
                                                                 installedKernels: inspection.installedKernels)
            skipped += bootSkipped
            warnings += bootWarnings
        }
        let pathResolver = BootPathResolver(filesystems: GuestMounter(guest: guest, devices: devices).filesystemUUIDs(plan),
                                            subvolumes: BootPathResolver.subvolumes(of: plan.fstab))
        let tool = try InitramfsRegenerator.detectTool(guest)
        let listings = InitramfsListings()
        try timed("initramfs") {
            if !options.regenInitramfs {
                skipped.append(SkippedGuestFix(area: "initramfs", reason: "regen_initramfs is off"))
            } else if !knownDistro {
                skipped.append(SkippedGuestFix(area: "initramfs", reason: "unknown distro: the guest's initramfs tool was not run"))
            } else if let tool {
                let found = try BootEntryFinder(guest: guest, resolver: pathResolver).find()
                var targets = InitramfsRegenerator.targets(entries: found.entries, installedKernels: try InitramfsRegenerator.moduleVersions(guest))
                if found.entries.isEmpty {
                    notEnsured.append("unknown boot loader: no grub.cfg menuentry or Boot Loader Specification entry names a kernel, "
                        + "so the initramfs it loads is not known; the images named as \(tool.rawValue) names them were rebuilt instead")
                    targets = try inspection.installedKernels.map { InitramfsRegenerator.Target(version: $0, image: tool.imagePath(kernel: $0)) }
                        .filter { try guest.isFile($0.image) }
                }
                let regenerator = InitramfsRegenerator(runGenerator: runGenerator, listings: listings)
                if let reason = try regenerator.apply(guest: guest, editor: editor, tool: tool, targets: targets) {
                    skipped.append(reason)
                }
            } else {
                notEnsured.append("unknown initramfs generator: none of update-initramfs, dracut or mkinitcpio is installed in the guest, "
                    + "so the virtio drivers could not be added to its initramfs")
                skipped.append(SkippedGuestFix(area: "initramfs", reason: "no initramfs generator hyper2kvm knows is installed"))
            }
        }
        // Last of the edits: it labels what every step before it wrote.
        try timed("selinux") {
            if let reason = try SELinuxRelabeler().apply(guest: guest, editor: editor) { skipped.append(reason) }
        }
        warnings += resolver.lookupErrors.map { "identity lookup failed: \($0)" }

        // Only what mounted: a filesystem that did not has its own warning already.
        try timed("finish") {
            for mountpoint in mounted {
                do { try guest.fstrim(mountpoint) } catch { warnings.append("fstrim \(mountpoint): \(error)") }
            }
            try guest.umountAll()
        }
        // Read back, read-only, from the written disks: what the guest will find at boot.
        let bootCheck = try timed("boot-check") { () throws -> BootChainCheck in
            var readBack = plan
            _ = try GuestMounter(guest: guest, devices: devices).mount(plan: &readBack, readOnly: true)
            let fstab = try guest.isFile("/etc/fstab") ? FstabEntry.parse(try guest.cat("/etc/fstab")) : []
            let check = BootChainVerifier(guest: guest, devices: devices, resolver: pathResolver, tool: tool, listings: listings).verify(fstab: fstab)
            try guest.umountAll()
            try guest.shutdown()
            return check
        }
        notEnsured += bootCheck.problems.map { "boot check: \($0)" }
        for reason in notEnsured where !warnings.contains(reason) { warnings.append(reason) }
        return GuestFixReport(inspection: inspection, changes: editor.changes, skipped: skipped,
                              warnings: warnings, backupDirectory: GuestFileEditor.backupDirectory, durations: durations,
                              firmware: firmware, bootCheck: bootCheck, bootNotEnsured: notEnsured)
    }
}

/// The job-owned qcow2 overlay the fix stage writes, over a source it must never write.
enum GuestFixOverlay {
    /// Creates `overlay` (qcow2) backed by `source` read-only, with the backing format explicit.
    static func create(over source: URL, sourceFormat: String, at overlay: URL) async throws {
        // qemu-img create opens the backing file to read its size: a source that blocks
        // (it was probed, but it is the user's file) must not hold the job forever.
        let limits = ExternalCommand.Limits.shortTool(
            .seconds(120), because: "creating an empty overlay only opens its backing file, which takes well under a second")
        try await ExternalCommand("qemu-img", ["create", "-q", "-f", "qcow2", "-b", source.path, "-F", sourceFormat, overlay.path],
                                  limits: limits)
            .runChecked(about: overlay.path)
    }
}
