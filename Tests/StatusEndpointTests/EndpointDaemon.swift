import Foundation
import Testing
import TestSupport

/// The real daemon binary with its HTTP endpoint on a free loopback port, for the endpoint's
/// end-to-end tests. Requests go through curl, a client we did not write.
final class EndpointDaemon: DaemonProcess, @unchecked Sendable {
    let base: String
    let port: Int

    var queue: String { base + "/queue" }
    var stateDir: String { base + "/state" }
    var url: String { "http://127.0.0.1:\(port)" }

    /// `listen`: the `http_listen` value, else 127.0.0.1 on `port` (a free one unless given).
    init(scratch: Scratch, port: Int? = nil, listen: String? = nil, extraConfig: String = "") throws {
        base = scratch.path("data")
        self.port = try port ?? FreePort.pick()
        let config = try scratch.write("daemon.yaml", """
            command: daemon
            file_stable_seconds: 1
            fix_guest: false
            verbose: 2
            retry_policy: {enabled: false}
            http_listen: \(listen ?? "127.0.0.1:\(self.port)")
            \(extraConfig)
            """)
        try super.init(base: base, configs: [config], log: URL(fileURLWithPath: scratch.path("daemon.log")))
    }

    /// GET through curl: (HTTP status, body).
    func get(_ path: String, headers: [String] = []) async throws -> (status: Int, body: String) {
        let result = try await sh(["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"]
                                  + headers.flatMap { ["-H", $0] } + [url + path], allowFailure: true)
        guard result.status == 0, let newline = result.out.lastIndex(of: "\n"), let code = Int(result.out[result.out.index(after: newline)...]) else {
            throw FixtureError("curl \(path) failed (\(result.status)): \(result.err)")
        }
        return (code, String(result.out[..<newline]))
    }

    /// Waits for the endpoint to answer /healthz.
    func waitForEndpoint(seconds: Double = 30) async -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let answer = try? await get("/healthz"), answer.status == 200 { return true }
            try? await Task.sleep(for: .milliseconds(300))
        }
        return false
    }

    /// SIGTERM, then waits (without blocking a test thread) for the exit; its status.
    func stop() async -> Int32? {
        if process.isRunning { process.terminate() }
        _ = await waitUntil(60) { !process.isRunning }
        return process.isRunning ? nil : process.terminationStatus
    }

    deinit {
        if process.isRunning { process.interrupt(); process.terminate() }
    }
}

/// A loopback TCP port nothing listens on now: bound to port 0, read back, closed.
enum FreePort {
    static func pick() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FixtureError("socket: \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
                guard bind(fd, pointer, length) == 0 else { return -1 }
                return getsockname(fd, pointer, &length)
            }
        }
        guard bound == 0 else { throw FixtureError("bind: \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
