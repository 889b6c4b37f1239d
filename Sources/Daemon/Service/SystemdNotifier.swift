import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// sd_notify(3) without libsystemd: one datagram per message to `$NOTIFY_SOCKET`.
/// Does nothing when the daemon is not run by systemd with `Type=notify`.
public struct SystemdNotifier: Sendable {
    let socketPath: String?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        socketPath = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        watchdogInterval = environment["WATCHDOG_USEC"].flatMap(UInt64.init).map { Duration.microseconds(Int64($0)) }
    }

    /// How often systemd expects `WATCHDOG=1` (`WatchdogSec=`), when it does.
    public let watchdogInterval: Duration?

    public var isActive: Bool { socketPath != nil }

    @discardableResult
    public func send(_ message: String) -> Bool {
        guard let socketPath else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        // A leading '@' names an abstract socket: its first byte is NUL on the wire.
        var pathBytes = Array(socketPath.utf8)
        if pathBytes.first == UInt8(ascii: "@") { pathBytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in pathBytes.enumerated() { buffer[index] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count)
        let payload = Array(message.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                sendto(fd, payload, payload.count, Int32(MSG_NOSIGNAL), socketAddress, length)
            }
        }
        return sent == payload.count
    }

    /// The `STATUS=` assignment: `systemctl status` shows it and `systemctl show` prints it
    /// as `StatusText=`, so `systemctl show hyper2kvm.service | grep WATCH_DIR` finds the
    /// queue directory. Control characters would end the assignment early: they become '?'.
    public static func status(watchDir: String, _ summary: String) -> String {
        let directory = String(watchDir.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })
        return "STATUS=WATCH_DIR=\(directory) · \(summary)"
    }

    /// Sends `WATCHDOG=1` at half the interval systemd asked for, until cancelled.
    public func runWatchdog() async {
        guard isActive, let interval = watchdogInterval else { return }
        while !Task.isCancelled {
            send("WATCHDOG=1")
            try? await Task.sleep(for: interval / 2)
        }
    }
}
