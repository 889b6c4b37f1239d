import Daemon
import Foundation

/// The command runs on Swift concurrency's default executors. (An earlier custom executor
/// on experimental SPI kept an idle daemon from waking at all; the runtime's own 1 Hz
/// worker-pool monitor is accepted instead, and our code never polls: see
/// `DaemonServiceTests.anIdleDaemonNeverWakes`.)
///
/// `main` is synchronous on purpose. An `async` main hands the main thread to
/// `dispatch_main()`, which ends it with `pthread_exit`: glibc then unwinds the thread's
/// stack, loading libgcc_s and paging in our `.eh_frame` tables, about 0.4 MiB that stay
/// resident for the daemon's whole life. Here the main thread only waits; the command
/// runs as a task and the process exits when it returns (or when ArgumentParser exits for
/// an error or `--help`).
@main
enum Entry {
    static func main() {
        Task.detached {
            await Hyper2KVM.main()
            exit(EXIT_SUCCESS)
        }
        while true { pause() }
    }
}
