import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Before the daemon starts: does 127.0.0.1 carry a datagram to itself?
///
/// Swift Foundation's run loop, which reports that a child such as qemu-img has exited, wakes
/// itself through a pair of UDP sockets on 127.0.0.1. With `PrivateNetwork=true` systemd gives
/// the daemon a network namespace of its own and brings its loopback up; where it cannot
/// (inside some containers) the loopback stays down, and a daemon started anyway would wait
/// forever for tools that have long finished. Refused here, it says why.
public enum LoopbackCheck {
    /// nil when the loopback works; else the refusal.
    public static func problem(unit: String?) -> String? {
        guard let failure = roundTrip() else { return nil }
        let dropIn = unit.map { " (a PrivateNetwork=true drop-in for \($0) where systemd cannot bring up its loopback?)" } ?? ""
        return "the loopback interface 127.0.0.1 is not usable here: \(failure)\(dropIn). The daemon needs it: "
            + "Foundation learns through a UDP pair on 127.0.0.1 that a tool it ran has exited."
    }

    /// Sends one datagram to a socket of its own on 127.0.0.1; the failing step, or nil.
    static func roundTrip() -> String? {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return "socket: \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = in_addr_t(0x7F00_0001).bigEndian
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bind(fd, socketAddress, length) == 0 && getsockname(fd, socketAddress, &length) == 0
            }
        }
        guard bound else { return "bind 127.0.0.1: \(String(cString: strerror(errno)))" }
        let payload: [UInt8] = [0x68]
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                sendto(fd, payload, payload.count, Int32(MSG_NOSIGNAL), socketAddress, length)
            }
        }
        guard sent == payload.count else { return "send to 127.0.0.1: \(String(cString: strerror(errno)))" }
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, 2000) == 1 else { return "nothing arrived on 127.0.0.1 within 2 s" }
        var buffer: [UInt8] = [0]
        guard recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT)) == 1 else {
            return "receive on 127.0.0.1: \(String(cString: strerror(errno)))"
        }
        return nil
    }
}
