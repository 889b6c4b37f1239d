import Foundation
import Journal
import Stages

/// A stage's checkpoints in the journal (`stage_checkpoints`): each save is one committed
/// transaction, durable when it returns.
struct JournalCheckpoints: StageCheckpoints {
    let journal: JobJournal
    let jobID: Int64
    let stage: String

    func load(_ name: String) throws -> String? {
        try journal.checkpoint(job: jobID, stage: stage, name: name)
    }

    func save(_ name: String, _ value: String) throws {
        try journal.setCheckpoint(job: jobID, stage: stage, name: name, value: value)
    }
}
