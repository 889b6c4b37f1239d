import Daemon
import Foundation

/// The process starts synchronously so that our executors are in place before the first
/// task exists (see `QuietExecutors` for why); the command then runs as a task while the
/// main thread serves the main actor.
@main
enum Entry {
    static func main() {
        QuietExecutors.install()
        Task.detached {
            await Hyper2KVM.main()
            exit(EXIT_SUCCESS)
        }
        QuietExecutors.runMainThread()
    }
}
