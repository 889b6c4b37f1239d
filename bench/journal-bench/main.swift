// journal-bench: transitions per second through the JobJournal API (WAL, synchronous=FULL)
// next to raw single-row SQLite commits (`BEGIN IMMEDIATE; INSERT; COMMIT` through the C
// API, WAL, synchronous=FULL) on the same file system, in interleaved rounds.
//
// usage: journal-bench [--rounds N] [--transitions N] [--dir DIR]

import Foundation
import GRDBSQLite
import Journal

struct BenchOptions {
    var rounds = 7
    var transitionsPerRound = 2000
    var directory = URL(fileURLWithPath: NSTemporaryDirectory())

    init(arguments: [String]) throws {
        var remaining = arguments.dropFirst()
        while let flag = remaining.popFirst() {
            guard let value = remaining.popFirst() else { throw BenchError.usage("\(flag) needs a value") }
            switch flag {
            case "--rounds":
                guard let number = Int(value), number > 0 else { throw BenchError.usage("--rounds: \(value)") }
                rounds = number
            case "--transitions":
                guard let number = Int(value), number >= 20 else { throw BenchError.usage("--transitions: \(value) (at least 20)") }
                transitionsPerRound = number
            case "--dir":
                directory = URL(fileURLWithPath: value)
            default:
                throw BenchError.usage("unknown option \(flag)")
            }
        }
    }
}

enum BenchError: Error, CustomStringConvertible {
    case usage(String)
    case sqlite(String)

    var description: String {
        switch self {
        case let .usage(message): "usage error: \(message)\nusage: journal-bench [--rounds N] [--transitions N] [--dir DIR]"
        case let .sqlite(message): "sqlite: \(message)"
        }
    }
}

/// The life of one job as the daemon journals it: 20 transitions, 8 of them stage
/// completions carrying one artifact each.
struct JournalWorkload {
    static let stages = ["probe", "extract", "convert", "fix-guest", "compress", "checksum", "emit", "publish"]
    static let transitionsPerJob = 5 + 2 * stages.count
    let journal: JobJournal
    private var nextSeed: UInt64 = 0

    init(journal: JobJournal) {
        self.journal = journal
    }

    /// Runs one whole job; returns the number of transitions committed.
    mutating func runJob() throws -> Int {
        nextSeed += 1
        let identity = SourceIdentity(device: 2049, inode: nextSeed, size: 1 << 30,
                                      mtimeNanoseconds: 1_700_000_000_000_000_000, ctimeNanoseconds: 1_700_000_000_000_000_000)
        let job = try journal.createJob(
            NewJob(sourcePath: "/srv/queue/vm\(nextSeed).ova", sourceKind: "ova", identity: identity), detail: nil)
        try journal.transition(job: job.id, to: .stable)
        try journal.transition(job: job.id, to: .claimed)
        var committed = 3
        for stage in Self.stages {
            try journal.transition(job: job.id, to: .stageStarted, stage: stage)
            let artifact = NewArtifact(
                name: "\(stage).out", path: "/srv/work/\(job.id)/\(stage).out", size: 1 << 20,
                sha256: String(repeating: "ab", count: 32))
            try journal.completeStage(job: job.id, stage: stage, artifacts: [artifact], detail: nil)
            committed += 2
        }
        try journal.transition(job: job.id, to: .published)
        try journal.transition(job: job.id, to: .archived)
        return committed + 2
    }
}

/// Single-row commits straight through the SQLite C API: the ceiling for any journal.
final class RawSQLiteInserts {
    private var connection: OpaquePointer?
    private var begin: OpaquePointer?
    private var insert: OpaquePointer?
    private var commit: OpaquePointer?
    private var row: Int64 = 0

    init(path: String) throws {
        guard sqlite3_open_v2(path, &connection, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK else {
            throw BenchError.sqlite("cannot open \(path)")
        }
        try execute("PRAGMA journal_mode = WAL")
        try execute("PRAGMA synchronous = FULL")
        try execute("""
            CREATE TABLE IF NOT EXISTS transitions (
                id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, to_state TEXT NOT NULL, at TEXT NOT NULL)
            """)
        begin = try prepare("BEGIN IMMEDIATE")
        insert = try prepare("INSERT INTO transitions (job_id, to_state, at) VALUES (?, 'stage-started', ?)")
        commit = try prepare("COMMIT")
    }

    deinit {
        sqlite3_finalize(begin)
        sqlite3_finalize(insert)
        sqlite3_finalize(commit)
        sqlite3_close_v2(connection)
    }

    func synchronous() throws -> Int32 {
        let statement = try prepare("PRAGMA synchronous")
        defer { sqlite3_finalize(statement) }
        guard sqlite3_step(statement) == SQLITE_ROW else { throw BenchError.sqlite("PRAGMA synchronous") }
        return sqlite3_column_int(statement, 0)
    }

    func run(transitions count: Int) throws -> Int {
        let at = "2026-01-01T00:00:00.000Z"
        for _ in 0..<count {
            row += 1
            try step(begin)
            sqlite3_bind_int64(insert, 1, row)
            sqlite3_bind_text(insert, 2, at, -1, unsafeBitCast(-1, to: sqlite3_destructor_type.self))
            try step(insert)
            try step(commit)
        }
        return count
    }

    private func step(_ statement: OpaquePointer?) throws {
        let result = sqlite3_step(statement)
        sqlite3_reset(statement)
        guard result == SQLITE_DONE else {
            throw BenchError.sqlite(String(cString: sqlite3_errmsg(connection)))
        }
    }

    private func execute(_ sql: String) throws {
        guard sqlite3_exec(connection, sql, nil, nil, nil) == SQLITE_OK else {
            throw BenchError.sqlite("\(sql): \(String(cString: sqlite3_errmsg(connection)))")
        }
    }

    private func prepare(_ sql: String) throws -> OpaquePointer? {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(connection, sql, -1, &statement, nil) == SQLITE_OK else {
            throw BenchError.sqlite("\(sql): \(String(cString: sqlite3_errmsg(connection)))")
        }
        return statement
    }
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/// Time spent and transitions committed by one side of the comparison.
struct Tally {
    var transitions = 0
    var seconds = 0.0
    var rate: Double { seconds > 0 ? Double(transitions) / seconds : 0 }

    mutating func measure(_ body: () throws -> Int) rethrows {
        let clock = ContinuousClock()
        var count = 0
        let elapsed = try clock.measure { count = try body() }
        transitions += count
        seconds += Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }
}

func formatted(_ value: Double) -> String {
    String(format: "%9.0f", value)
}

func runBench() throws {
    let options = try BenchOptions(arguments: CommandLine.arguments)
    let workDirectory = options.directory.appendingPathComponent("journal-bench-\(getpid())-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: workDirectory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: workDirectory) }

    let journal = try JobJournal.openForWriting(stateDirectory: workDirectory.appendingPathComponent("state"))
    let settings = try journal.settings()
    let raw = try RawSQLiteInserts(path: workDirectory.appendingPathComponent("raw.sqlite").path)
    var workload = JournalWorkload(journal: journal)

    print("journal-bench: \(options.rounds) rounds x \(options.transitionsPerRound) transitions, dir \(workDirectory.path)")
    print("journal: journal_mode=\(settings.journalMode) synchronous=\(settings.synchronous); raw: journal_mode=wal synchronous=\(try raw.synchronous())")
    guard settings.synchronous == 2, try raw.synchronous() == 2 else {
        throw BenchError.sqlite("synchronous is not FULL; the comparison would be meaningless")
    }

    // Warm-up: first commits on a new file pay for file growth and cold caches.
    for _ in 0..<10 { _ = try workload.runJob() }
    _ = try raw.run(transitions: 200)

    var apiRates: [Double] = []
    var rawRates: [Double] = []
    print("round   journal API tx/s   raw SQLite tx/s   ratio")
    for round in 1...options.rounds {
        // The two sides alternate job by job (one job's 20 transitions, then 20 raw
        // commits, order swapped each time), so load from other work on a shared machine
        // falls on both alike instead of on whichever ran during a busy second.
        var api = Tally()
        var rawSide = Tally()
        var apiFirst = round % 2 == 1
        while api.transitions < options.transitionsPerRound {
            if apiFirst {
                try api.measure { try workload.runJob() }
                try rawSide.measure { try raw.run(transitions: JournalWorkload.transitionsPerJob) }
            } else {
                try rawSide.measure { try raw.run(transitions: JournalWorkload.transitionsPerJob) }
                try api.measure { try workload.runJob() }
            }
            apiFirst.toggle()
        }
        apiRates.append(api.rate)
        rawRates.append(rawSide.rate)
        print("\(String(format: "%5d", round))   \(formatted(api.rate))          \(formatted(rawSide.rate))         \(String(format: "%5.1f%%", 100 * api.rate / rawSide.rate))")
    }
    let apiMedian = median(apiRates)
    let rawMedian = median(rawRates)
    let ratio = apiMedian / rawMedian
    print("median  \(formatted(apiMedian))          \(formatted(rawMedian))         \(String(format: "%5.1f%%", 100 * ratio))")
    print("journal API: \(String(format: "%.0f", apiMedian)) transitions/s (synchronous=FULL); raw SQLite: \(String(format: "%.0f", rawMedian)) inserts/s; ratio \(String(format: "%.1f", 100 * ratio))% (goal >= 25%)")
    try journal.close()
}

do {
    try runBench()
} catch {
    FileHandle.standardError.write(Data("journal-bench: \(error)\n".utf8))
    exit(1)
}
