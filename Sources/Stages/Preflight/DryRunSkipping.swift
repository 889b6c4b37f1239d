/// A stage that a preflight (`dry_run: true`) does not run: everything after `fix`, which
/// would convert, describe, hash, publish or register the VM. Skipped with its reason, so
/// the journal says what was not done and why.
public struct DryRunSkipping: PipelineStage {
    let stage: any PipelineStage

    public init(_ stage: any PipelineStage) {
        self.stage = stage
    }

    public var name: StageName { stage.name }

    public func skipReason(in context: StageContext) -> String? {
        if context.options.dryRun {
            return "dry_run: true (a preflight: the report is written by stage fix, nothing is converted or published)"
        }
        return stage.skipReason(in: context)
    }

    public func run(in context: StageContext) async throws -> StageOutputs {
        try await stage.run(in: context)
    }
}
