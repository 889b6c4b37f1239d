import Foundation

/// The qcow2 overlays a guest converter writes into (stage `fix`, or `v2v` with
/// `use_v2v: true`), one over each source disk, so the source is never written and
/// `convert` copies overlay + source in one pass.
struct GuestOverlays {
    /// The overlays by output name, at their `.partial` paths.
    var files: [String: URL] = [:]
    /// The overlays in the VM's disk order.
    var paths: [URL] = []
    /// Held for the whole stage: each overlay names its source by our descriptors
    /// (`/proc/<our pid>/fd/<n>`), which the converter's qemu opens through the overlay.
    var sources: [PinnedImage] = []

    /// Pins each source (checked against what the probe recorded) and creates a fresh overlay
    /// over it; a half-made overlay of an earlier attempt is replaced.
    static func make(for vm: VMDescription, in context: StageContext, qemuImg: QemuImg) async throws -> GuestOverlays {
        var made = GuestOverlays()
        for disk in vm.disks {
            let name = StageFiles.overlay(diskID: disk.id)
            let overlay = context.newOutput(named: name)
            try? FileManager.default.removeItem(at: overlay)
            let source = try await PinnedImage.openVerified(disk.locator, expecting: disk.identity, qemuImg: qemuImg.executable)
            made.sources.append(source)
            try await qemuImg.createOverlay(backing: source, at: overlay)
            made.paths.append(overlay)
            made.files[name] = overlay
        }
        return made
    }

    /// Why no guest converter runs for this job, whichever one is configured; nil when one does.
    static func skipReason(in context: StageContext) -> String? {
        if !context.options.fixGuest { return "fix_guest: false" }
        if context.kind == .manifest, let manifest = try? ArtifactManifest.load(from: context.source),
           !manifest.restricting(context.options).fixGuest {
            return "the manifest sets pipeline.fix.enabled: false"
        }
        return nil
    }
}
