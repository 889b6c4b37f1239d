import Foundation

/// Guest OS fixes on a qcow2 overlay over each source disk (the source is never written);
/// convert then copies overlay + source in one pass.
public struct FixStage: PipelineStage {
    public let name = StageName.fix
    public init() {}

    public func skipReason(in context: StageContext) -> String? {
        if !context.options.fixGuest { return "fix_guest: false" }
        return "guest fixes are not implemented yet"
    }

    public func run(in context: StageContext) async throws -> StageOutputs {
        StageOutputs()
    }
}
