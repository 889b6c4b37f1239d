import ArgumentParser
import Foundation
import Stages

/// Subcommands the daemon runs as children of its own; hidden from help. (The guest fixer
/// is a program of its own, `hyper2kvm-fix-guest`, so that this one never links libguestfs.)
struct InternalGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "internal",
        abstract: "Work the daemon runs in a child process of its own.",
        shouldDisplay: false,
        subcommands: [ReadSource.self, Supervise.self])

    /// `IsolatedSourceReader`'s child: identifies or reads one source and prints the
    /// answer as JSON (exit status 0), or a stage error as JSON (exit status 2).
    struct ReadSource: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "read-source",
            abstract: "Identify (--identify) or read (--kind, --scratch) one source; answer in JSON.",
            shouldDisplay: false)

        /// Tests prove that a reader that traps costs one job, not the daemon: when this
        /// variable names the source's file, the reader traps as a parser bug would. Only
        /// this child looks at it; nothing in a dropped file can set it.
        static let trapVariable = "HYPER2KVM_READER_TRAP_FOR_TESTS"

        @Flag(help: "Print the input kind the content shows.")
        var identify = false
        @Option(help: "Read the source as this kind.")
        var kind: String?
        @Option(help: "A directory the reader may write to (AMI decompression).")
        var scratch: String?
        @Option(name: .customLong("manifest-allowed-dir"), help: "A directory a manifest's disks may be in (repeatable).")
        var manifestAllowedDirectories: [String] = []
        @Argument(help: "The source file.")
        var source: String

        func validate() throws {
            guard identify != (kind != nil) else { throw ValidationError("give exactly one of --identify and --kind") }
        }

        func run() async throws {
            if let armed = ProcessInfo.processInfo.environment[Self.trapVariable], !armed.isEmpty,
               armed == URL(fileURLWithPath: source).lastPathComponent {
                fatalError("\(Self.trapVariable) asked the reader to trap on \(armed)")
            }
            let answer = await IsolatedSourceReader.serve(source: source, kind: identify ? nil : kind, scratchDirectory: scratch,
                                                          manifestAllowedDirectories: manifestAllowedDirectories)
            FileHandle.standardOutput.write(answer.output)
            if answer.status != 0 { throw ExitCode(answer.status) }
        }
    }

    /// Runs a tool we did not write (virt-v2v-in-place) so that it dies with the daemon
    /// (`Supervisor`): exits as the tool did.
    struct Supervise: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "supervise", abstract: "Run COMMAND; kill it when the parent dies.", shouldDisplay: false)

        @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.")
        var command: [String] = []

        func run() throws {
            throw ExitCode(Supervisor.run(command))
        }
    }
}
