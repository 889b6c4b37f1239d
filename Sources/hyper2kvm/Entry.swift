import Daemon
import Foundation

/// The command runs on Swift concurrency's default executors. (An earlier custom executor
/// on experimental SPI kept an idle daemon from waking at all; the runtime's own 1 Hz
/// worker-pool monitor is accepted instead, and our code never polls: see
/// `DaemonServiceTests.anIdleDaemonNeverWakes`.)
@main
enum Entry {
    static func main() async {
        await Hyper2KVM.main()
    }
}
