import Foundation

/// Where a stage keeps checkpoints inside itself (the journal, in the daemon): a value by
/// name, for this job and stage. `save` returns only once the value is durable, so the
/// stage may journal "chunk N is done" only after chunk N's bytes are durable and be sure
/// a crash loses at most the chunk in flight.
public protocol StageCheckpoints: Sendable {
    func load(_ name: String) throws -> String?
    func save(_ name: String, _ value: String) throws
}

/// No checkpoints: every run of a stage starts at its beginning (unit tests, callers
/// without a journal).
public struct NoCheckpoints: StageCheckpoints {
    public init() {}
    public func load(_ name: String) throws -> String? { nil }
    public func save(_ name: String, _ value: String) throws {}
}
