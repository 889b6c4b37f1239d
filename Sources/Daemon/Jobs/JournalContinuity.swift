import Foundation
import Journal
import Stages

/// Opens the journal for writing, refusing to start a fresh one where an earlier journal
/// has been lost: jobs whose journal vanished would all be converted again from scratch,
/// and outputs published under the old journal would be duplicated beside the new ones.
///
/// A new journal is created silently only on a first start (none of the traces below).
/// After a deliberate reset, `hyper2kvm journal init` creates the empty journal.
public enum JournalContinuity {
    public static func openForWriting(_ configuration: Configuration) throws -> JobJournal {
        let stateDirectory = URL(fileURLWithPath: configuration.stateDir)
        let journalPath = stateDirectory.appendingPathComponent(JobJournal.databaseFileName).path
        if !FileManager.default.fileExists(atPath: journalPath) {
            let traces = earlierUse(of: configuration)
            if !traces.isEmpty {
                throw StageError(.badInput, file: journalPath,
                                 "the journal is missing, but this installation has been used before ("
                                     + traces.joined(separator: "; ") + "). hyper2kvm will not start a new journal "
                                     + "silently: every job would be converted again and published outputs duplicated. "
                                     + "If the journal was lost by mistake, restore \(JobJournal.databaseFileName) "
                                     + "(with its -wal file) from backup. To start over on purpose, run "
                                     + "`hyper2kvm journal init --state-dir \(configuration.stateDir)`; outputs already "
                                     + "published stay where they are and are not known to the new journal.")
            }
        }
        return try JobJournal.openForWriting(stateDirectory: stateDirectory)
    }

    /// Creates an empty journal where none exists (`hyper2kvm journal init`).
    public static func initialise(stateDirectory: URL) throws {
        let journalPath = stateDirectory.appendingPathComponent(JobJournal.databaseFileName).path
        guard !FileManager.default.fileExists(atPath: journalPath) else {
            throw StageError(.badInput, file: journalPath, "a journal already exists; it is never replaced")
        }
        try FileManager.default.createDirectory(at: stateDirectory, withIntermediateDirectories: true)
        try JobJournal.openForWriting(stateDirectory: stateDirectory).close()
    }

    /// What shows that a journal existed here: its WAL file, job scratch directories, or
    /// published VM directories carrying the job marker. Each of these is written only
    /// after the journal file exists. The lock file is not evidence: it is taken before
    /// the journal is created, so a first start killed in between leaves it alone, and
    /// counting it refused every later start.
    static func earlierUse(of configuration: Configuration) -> [String] {
        let files = FileManager.default
        var traces: [String] = []
        let walPath = URL(fileURLWithPath: configuration.stateDir)
            .appendingPathComponent(JobJournal.databaseFileName + "-wal").path
        if files.fileExists(atPath: walPath) {
            traces.append("\(walPath) exists")
        }
        let jobDirectories = ((try? files.contentsOfDirectory(atPath: configuration.workDir)) ?? [])
            .filter { $0.hasPrefix("job-") }.sorted()
        if let first = jobDirectories.first {
            traces.append("\(jobDirectories.count) job director\(jobDirectories.count == 1 ? "y" : "ies") in "
                          + "\(configuration.workDir) (\(first)…)")
        }
        let published = ((try? files.contentsOfDirectory(atPath: configuration.outputDir)) ?? []).filter {
            files.fileExists(atPath: URL(fileURLWithPath: configuration.outputDir)
                .appendingPathComponent($0).appendingPathComponent(OutputPublisher.jobMarkerName).path)
        }.sorted()
        if let first = published.first {
            traces.append("\(published.count) published VM director\(published.count == 1 ? "y" : "ies") in "
                          + "\(configuration.outputDir) (\(first)…)")
        }
        return traces
    }
}
