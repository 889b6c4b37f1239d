import Foundation

/// What systemd does with `NOTIFY_SOCKET`, for tests: a datagram socket whose every message a
/// small python3 listener appends to a file (each followed by a `--` line). It stops at
/// `STOPPING=1`, or after `timeoutSeconds` without a message.
public final class NotifyListener {
    public let socket: String
    public let messages: String
    private let process = Process()

    /// Starts the listener and waits (at most 5 s) until its socket exists.
    public init(socket: String, messages: String, timeoutSeconds: Int) throws {
        self.socket = socket
        self.messages = messages
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", """
            import socket, sys
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); s.settimeout(\(timeoutSeconds))
            with open(sys.argv[2], "a") as out:
                while True:
                    try: data = s.recv(4096)
                    except socket.timeout: break
                    out.write(data.decode() + "\\n--\\n"); out.flush()
                    if b"STOPPING=1" in data: break
            """, socket, messages]
        try process.run()
        for _ in 0..<100 where !isListening { usleep(50_000) }
    }

    public var isListening: Bool { FileManager.default.fileExists(atPath: socket) }
    public var received: String { (try? String(contentsOfFile: messages, encoding: .utf8)) ?? "" }

    public func stop() {
        if process.isRunning { process.terminate() }
    }

    /// Blocks until the listener has ended (it ends by itself after `STOPPING=1`).
    public func waitUntilExit() {
        process.waitUntilExit()
    }

    deinit { stop() }
}
