import Foundation
import TestSupport
import Testing
@testable import Journal
#if canImport(Glibc)
import Glibc
#endif

@Suite("One owner per journal")
struct OwnershipTests {
    @Test func secondWriterInTheSameProcessIsRefusedWithOurPID() throws {
        let directory = try Scratch()
        let first = try JobJournal.openForWriting(stateDirectory: directory.url)
        #expect(throws: JournalError.locked(path: directory.databasePath, holderPID: getpid())) {
            try JobJournal.openForWriting(stateDirectory: directory.url)
        }
        let message = JournalError.locked(path: directory.databasePath, holderPID: getpid()).description
        #expect(message.contains("pid \(getpid())"))
        // The refused open must not have disturbed the owner.
        _ = try first.createJob(Fixture.newJob())
        try first.close()
        let second = try JobJournal.openForWriting(stateDirectory: directory.url)
        #expect(try second.allJobs().count == 1)
    }

    @Test func lockIsReleasedWhenTheJournalIsDeallocated() throws {
        let directory = try Scratch()
        do {
            let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
            _ = try journal.allJobs()
        }
        _ = try JobJournal.openForWriting(stateDirectory: directory.url)
    }

    /// A child forked by another thread holds copies of our descriptors until its exec
    /// closes them (O_CLOEXEC). A copy made with dup stands in for it: closing the journal
    /// must still free it for the next open.
    @Test func closeReleasesTheLockWhileACopyOfItsDescriptorLives() throws {
        let directory = try Scratch()
        let journal = try JobJournal.openForWriting(stateDirectory: directory.url)
        let lockPath = directory.url.appendingPathComponent(JobJournal.lockFileName).resolvingSymlinksInPath().path
        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").compactMap(Int32.init)
        let lockDescriptor = descriptors.first {
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)")) == lockPath
        }
        let copy = try #require(lockDescriptor.map { dup($0) })
        defer { close(copy) }
        #expect(copy >= 0)
        try journal.close()
        let reopened = try JobJournal.openForWriting(stateDirectory: directory.url)
        try reopened.close()
    }

    @Test func writerIsRefusedWhileAnotherProcessHoldsTheLock() throws {
        let directory = try Scratch()
        let holder = Process()
        let holderInput = Pipe()
        holder.executableURL = URL(fileURLWithPath: "/bin/sh")
        // The shell records its pid the way the daemon does, then becomes flock(1) (same
        // pid) running `cat`, which exits when we close its stdin. -o: cat does not
        // inherit the lock, so the lock lives exactly as long as that pid.
        holder.arguments = ["-c", "echo $$ > \"$1\"; exec flock -o \"$1\" cat", "sh", directory.lockPath]
        holder.standardInput = holderInput
        holder.standardOutput = FileHandle.nullDevice
        try holder.run()
        var released = false
        defer {
            if !released { try? holderInput.fileHandleForWriting.close() }
            holder.waitUntilExit()
        }
        try waitUntilLocked(directory.lockPath)

        #expect(throws: JournalError.locked(path: directory.databasePath, holderPID: holder.processIdentifier)) {
            try JobJournal.openForWriting(stateDirectory: directory.url)
        }
        // Refused writers leave the holder's pid in place.
        #expect(try String(contentsOfFile: directory.lockPath, encoding: .utf8) == "\(holder.processIdentifier)\n")

        released = true
        try holderInput.fileHandleForWriting.close()
        holder.waitUntilExit()
        _ = try JobJournal.openForWriting(stateDirectory: directory.url)
    }

    @Test func readerWorksWhileTheWriterHoldsTheJournal() throws {
        let directory = try Scratch()
        let writer = try JobJournal.openForWriting(stateDirectory: directory.url)
        let job = try writer.createJob(Fixture.newJob())
        let reader = try JobJournal.openForReading(stateDirectory: directory.url)
        #expect(try reader.job(job.id)?.state == .discovered)
        try writer.transition(job: job.id, to: .stable)
        try writer.transition(job: job.id, to: .claimed)
        #expect(try reader.job(job.id)?.state == .claimed)
        #expect(try reader.history(job: job.id).map(\.to) == [.discovered, .stable, .claimed])
        // The writer is not blocked by the open reader.
        try writer.transition(job: job.id, to: .stageStarted, stage: "probe")
        #expect(try reader.jobs(in: [.stageStarted]).map(\.id) == [job.id])
    }

    /// Polls with our own non-blocking flock until the holder has the lock.
    private func waitUntilLocked(_ path: String) throws {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            if descriptor >= 0 {
                let gotIt = flock(descriptor, LOCK_EX | LOCK_NB) == 0
                close(descriptor)
                if !gotIt { return }
            }
            usleep(20_000)
        }
        Issue.record("the helper process never took the lock")
    }
}
