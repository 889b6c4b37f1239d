import Foundation
import Stages

/// Named places where a test makes the process kill itself with SIGKILL, to prove that a
/// crash at any of them costs nothing but time. Armed only by the environment variable
/// `HYPER2KVM_CRASH_POINT=<name>`; `hyper2kvm crash-points` lists every name.
public enum CrashPoints {
    public static let environmentVariable = "HYPER2KVM_CRASH_POINT"

    /// Every point, in the order a job passes them.
    public static var all: [String] {
        var names: [String] = ["after-claim"]
        for stage in StageName.allCases {
            let name = stage.rawValue
            names += ["\(name).before-start", "\(name).after-start", "\(name).outputs-durable", "\(name).after-commit"]
        }
        names += ["before-published", "after-published", "before-archive", "after-archive"]
        return names
    }

    private static let armed: String? = ProcessInfo.processInfo.environment[environmentVariable]

    /// Kills the process at once if `name` is the armed point.
    public static func hit(_ name: @autoclosure () -> String) {
        guard let armed, armed == name() else { return }
        FileHandle.standardError.write(Data("crash point \(armed): SIGKILL\n".utf8))
        kill(getpid(), SIGKILL)
    }
}
