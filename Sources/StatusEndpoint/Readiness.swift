import Daemon
import Foundation
import Journal
import Stages

/// `/readyz`: whether the daemon can take and finish work now. Each failed check is a reason.
enum Readiness {
    static func problems(_ context: DaemonContext, spaces: [String: FileSystemSpace]) -> [String] {
        var problems: [String] = []
        let journal = context.journal
        if !journal.isWritable {
            problems.append("the journal is open read-only")
        } else if access(journal.path, W_OK) != 0 || access(context.configuration.stateDir, W_OK | X_OK) != 0 {
            problems.append("the journal \(journal.path) is not writable: \(String(cString: strerror(errno)))")
        }
        if !context.health.watcherAlive { problems.append("the queue watcher is not running") }
        for name in spaces.keys.sorted() {
            guard let space = spaces[name] else { continue }
            if space.available < SpaceCheck.reserveBytes {
                problems.append("\(name): \(space.available) bytes free, below the floor of \(SpaceCheck.reserveBytes)")
            }
        }
        for name in ["work", "output"] where spaces[name] == nil {
            problems.append("\(name): cannot read its filesystem's free space")
        }
        return problems
    }
}
