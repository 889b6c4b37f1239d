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
        let inspection = try timed("inspect") { () throws -> GuestInspection in
            var inspection: GuestInspection
            do {
                inspection = try GuestInspector.inspect(guest, disks: diskPaths)
            } catch let error as StageError {
                // BitLocker or a damaged registry hive deserve their own explanation.
                throw WindowsInspector.explainInspectionFailure(guest, error: error, disk: diskPaths.first) ?? error
            }
            guard inspection.type == "linux" || inspection.type == "windows" else {
                throw StageError(.unsupportedGuest, file: diskPaths.first,
                                 "the guest is \(inspection.type) (\(inspection.productName)); only Linux and Windows guests are fixed")
            }
            guard inspection.type == "linux" else { return inspection }
            let mounting = try GuestInspector.mountFilesystems(guest, inspection: inspection)
            mounted = mounting.mounted
            warnings += mounting.warnings
            inspection.installedKernels = try InitramfsRegenerator.installedKernels(guest)
            return inspection
        }
        checkpoint?("inspected")

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
        let knownDistro = inspection.isKnownLinuxDistro
        if !knownDistro {
            warnings.append("distro '\(inspection.distro)' (\(inspection.productName)) is not one hyper2kvm knows: "
                + "only the generic file fixes were applied; guest tools (grub, initramfs) were not run")
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
        try timed("initramfs") {
            if !options.regenInitramfs {
                skipped.append(SkippedGuestFix(area: "initramfs", reason: "regen_initramfs is off"))
            } else if !knownDistro {
                skipped.append(SkippedGuestFix(area: "initramfs", reason: "unknown distro: the guest's initramfs tool was not run"))
            } else if let reason = try InitramfsRegenerator().apply(guest: guest, editor: editor, kernels: inspection.installedKernels) {
                skipped.append(reason)
            }
        }
        warnings += resolver.lookupErrors.map { "identity lookup failed: \($0)" }

        // Only what mounted: a filesystem that did not has its own warning already.
        try finish(trimming: mounted)
        return GuestFixReport(inspection: inspection, changes: editor.changes, skipped: skipped,
                              warnings: warnings, backupDirectory: GuestFileEditor.backupDirectory, durations: durations)
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
