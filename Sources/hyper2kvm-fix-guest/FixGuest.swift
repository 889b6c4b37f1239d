import ArgumentParser
import GuestFix
import Stages

/// `IsolatedGuestFixer`'s child, a program of its own so that only it links libguestfs:
/// fixes the guest on the overlays the request names and writes the fix report, or a stage
/// error, as JSON to the answer file (exit status 0, or 2 for an error). The daemon runs
/// it from beside its own executable; it is not meant to be run by hand.
@main
struct FixGuest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hyper2kvm-fix-guest",
        abstract: "Fix the guest on the overlays --request names; write the report to --answer (run by the hyper2kvm daemon).",
        version: Hyper2KVMVersion.current)

    @Option(help: "The request: JSON with the disks (overlays) and the conversion options.")
    var request: String
    @Option(help: "Where to write the answer (JSON).")
    var answer: String

    func run() async throws {
        let status = await GuestFixChild.serve(request: request, answer: answer)
        if status != 0 { throw ExitCode(status) }
    }
}
