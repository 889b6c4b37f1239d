/// The stages every job runs, in order. `emit` comes before `checksum` (the design lists
/// them the other way) so that SHA256SUMS also covers domain.xml and metadata.json.
/// `register` (libvirt) runs only after the VM is published, so a libvirt problem never
/// costs the conversion.
public enum StandardPipeline {
    /// - Parameter parallelDiskCopies: disks of one job copied at once (1: one after another).
    public static func stages(toolVersion: String, parallelDiskCopies: Int) -> [any PipelineStage] {
        // With `dry_run: true` the fix stage writes the preflight report and the rest is skipped.
        let afterFix: [any PipelineStage] = [
            V2VStage(),
            ConvertStage(parallelDiskCopies: parallelDiskCopies),
            EmitStage(toolVersion: toolVersion),
            ChecksumStage(),
            PublishStage(),
            RegisterStage(),
        ]
        return [ProbeStage(), ExtractStage(), FixStage()] + afterFix.map(DryRunSkipping.init)
    }
}
