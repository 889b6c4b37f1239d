import Foundation
import Stages

/// Named places where a test makes the process kill itself with SIGKILL, to prove that a
/// crash at any of them costs nothing but time. Armed only by the environment variable
/// `HYPER2KVM_CRASH_POINT=<name>`; `hyper2kvm crash-points` lists every name.
/// `HYPER2KVM_CRASH_POINT=trap:<name>` makes the process trap there instead, as a bug would
/// (a Swift runtime trap: a fatal signal the daemon's crash record sees, unlike SIGKILL).
public enum CrashPoints {
    public static let environmentVariable = "HYPER2KVM_CRASH_POINT"
    public static let trapPrefix = "trap:"

    /// Every point, in the order a job passes them.
    public static var all: [String] {
        var names: [String] = ["after-discovered", "after-stable", "after-claim"]
        for stage in StageName.allCases {
            let name = stage.rawValue
            names += ["\(name).before-start", "\(name).after-start", "\(name).outputs-durable", "\(name).after-commit"]
        }
        names += ["before-published", "after-published", "before-archive", "after-archive"]
        return names
    }

    private static let armed: String? = ProcessInfo.processInfo.environment[environmentVariable]

    /// Kills the process at once if `name` is the armed point (traps if armed as `trap:<name>`).
    public static func hit(_ name: @autoclosure () -> String) {
        guard let armed else { return }
        if armed.hasPrefix(trapPrefix), armed.dropFirst(trapPrefix.count) == name() {
            FileHandle.standardError.write(Data("crash point \(armed): trap\n".utf8))
            fatalError("crash point \(armed)")
        }
        guard armed == name() else { return }
        FileHandle.standardError.write(Data("crash point \(armed): SIGKILL\n".utf8))
        kill(getpid(), SIGKILL)
    }
}
