import Foundation

/// Where one of our own programs is, for a child process (`hyper2kvm` for the source reader
/// and `internal supervise`, `hyper2kvm-fix-guest` for the guest fixer): the override
/// variable when set; our own program when it has that name (the daemon and the CLI);
/// otherwise the program of that name beside ours. Our program is found through
/// /proc/self/exe with symlinks resolved, since argv[0] may be a relative or made-up name and
/// a symlinked `hyper2kvm` must find its companions beside the real file. Beside the daemon is
/// where `scripts/install` puts them, and beside a test bundle or bench driver is where the
/// build does.
struct CompanionExecutable {
    let name: String
    let variable: String
    /// Completes "the executable that … in a child process" in the error.
    let purpose: String

    static var ownExecutable: URL { URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath() }

    /// The path, or a `.toolFailed` error naming the path looked at and the override. The file
    /// is checked when a stage needs it, not at startup: a daemon that never fixes a guest
    /// (`fix_guest: false`) does not need the fixer.
    func path(environment: [String: String], ownExecutable: URL = CompanionExecutable.ownExecutable) throws -> String {
        if let path = environment[variable], !path.isEmpty { return path }
        let candidate = ownExecutable.lastPathComponent == name
            ? ownExecutable : ownExecutable.deletingLastPathComponent().appendingPathComponent(name)
        guard FileManager.default.isExecutableFile(atPath: candidate.path) else {
            throw StageError(.toolFailed, file: candidate.path,
                             "cannot find the \(name) executable that \(purpose) in a child process (looked at "
                                 + "\(candidate.path), beside \(ownExecutable.path)); install it beside hyper2kvm or set \(variable)")
        }
        return candidate.path
    }
}
