import Foundation
import SystemSupport
#if canImport(Glibc)
import Glibc
#endif

/// A small client for plain SMTP (RFC 5321): EHLO, AUTH PLAIN when a user is set, MAIL FROM,
/// RCPT TO, DATA with dot-stuffing, QUIT. No STARTTLS and no implicit TLS: the configuration
/// refuses `email_starttls: true` and a password for any host but loopback, so the intended
/// setup is the host's own MTA on localhost:25, which relays with TLS. No SMTP library is
/// packaged for Swift here, and these few commands are all a notification needs.
///
/// Blocking, with a timeout on every socket call: run it on a thread of its own (`BlockingWork`).
struct SMTPClient {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    let host: String
    let port: Int
    let username: String?
    let password: Secret?
    var timeoutSeconds = 15

    func send(from: String, to recipients: [String], message: String) throws {
        let socket = try connect()
        defer { close(socket) }
        var reader = ReplyReader(socket: socket)
        try reader.expect(220, after: "connecting")
        var name = [CChar](repeating: 0, count: 256)
        let ehloName = gethostname(&name, name.count - 1) == 0 ? String(cString: name) : "localhost"
        try command("EHLO \(ehloName.isEmpty ? "localhost" : ehloName)", socket, &reader, expect: 250)
        if let username, let password {
            let token = Data(([0] + Array(username.utf8) + [0] + Array(password.revealed.utf8))).base64EncodedString()
            // Shown as "AUTH PLAIN" in any error: the token is the password.
            try write("AUTH PLAIN \(token)\r\n", socket)
            try reader.expect(235, after: "AUTH PLAIN")
        }
        try command("MAIL FROM:<\(from)>", socket, &reader, expect: 250)
        for recipient in recipients {
            try command("RCPT TO:<\(recipient)>", socket, &reader, expect: 250, also: 251)
        }
        try command("DATA", socket, &reader, expect: 354)
        try write(Self.dotStuffed(message) + ".\r\n", socket)
        try reader.expect(250, after: "the message")
        // The message is accepted; a failed QUIT changes nothing.
        try? write("QUIT\r\n", socket)
    }

    /// CRLF line ends everywhere (a bare CR or LF in a source path cannot end the data or
    /// forge a header) and a dot doubled at the start of a line (RFC 5321 4.5.2).
    static func dotStuffed(_ message: String) -> String {
        let normalized = message.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        var lines = normalized.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        return lines.map { $0.hasPrefix(".") ? "." + $0 : $0 }.map { $0 + "\r\n" }.joined()
    }

    private func command(_ line: String, _ socket: Int32, _ reader: inout ReplyReader, expect code: Int,
                         also other: Int? = nil) throws {
        try write(line + "\r\n", socket)
        try reader.expect(code, after: line, or: other)
    }

    private func connect() throws -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw Failure(description: "cannot resolve SMTP host \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            entry = info.pointee.ai_next
            let fd = Glibc.socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), info.pointee.ai_protocol)
            guard fd >= 0 else { continue }
            var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            // On Linux SO_SNDTIMEO also bounds connect().
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            if SystemCall.retryingOnInterrupt({ Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) }) == 0 {
                return fd
            }
            lastError = String(cString: strerror(errno))
            close(fd)
        }
        throw Failure(description: "cannot connect to SMTP server \(host):\(port): \(lastError)")
    }

    private func write(_ text: String, _ socket: Int32) throws {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let sent = bytes.withUnsafeBytes { buffer in
                SystemCall.retryingOnInterrupt { Glibc.send(socket, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL)) }
            }
            guard sent > 0 else {
                throw Failure(description: "SMTP server \(host):\(port): sending failed: \(String(cString: strerror(errno)))")
            }
            bytes = bytes.dropFirst(sent)
        }
    }

    /// Reads replies ("250-first line", …, "250 last line") from the socket.
    private struct ReplyReader {
        let socket: Int32
        var buffer: [UInt8] = []

        mutating func expect(_ code: Int, after what: String, or other: Int? = nil) throws {
            // Never echo what was sent: for AUTH it is the password.
            let shown = what.hasPrefix("AUTH") ? "AUTH PLAIN" : what
            let (got, text) = try reply()
            guard got == code || got == other else {
                throw Failure(description: "SMTP server answered \(got) to \(shown): \(UntrustedText.escaped(text))")
            }
        }

        private mutating func reply() throws -> (Int, String) {
            var lines: [String] = []
            while true {
                let line = try readLine()
                lines.append(line)
                let bytes = Array(line.utf8)
                guard bytes.count >= 3, let code = Int(String(decoding: bytes[0..<3], as: UTF8.self)) else {
                    throw Failure(description: "not an SMTP reply: \(UntrustedText.escaped(String(line.prefix(80))))")
                }
                if bytes.count == 3 || bytes[3] != UInt8(ascii: "-") { return (code, lines.joined(separator: " ").prefix(300).description) }
                guard lines.count < 100 else { throw Failure(description: "SMTP reply of more than 100 lines") }
            }
        }

        private mutating func readLine() throws -> String {
            while true {
                if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = buffer[..<newline]
                    buffer.removeSubrange(...newline)
                    return String(decoding: line.last == UInt8(ascii: "\r") ? line.dropLast() : line, as: UTF8.self)
                }
                guard buffer.count < 4096 else { throw Failure(description: "SMTP reply line longer than 4096 bytes") }
                var chunk = [UInt8](repeating: 0, count: 1024)
                let count = chunk.withUnsafeMutableBytes { raw in
                    SystemCall.retryingOnInterrupt { Glibc.recv(socket, raw.baseAddress, raw.count, 0) }
                }
                guard count > 0 else {
                    throw Failure(description: count == 0 ? "SMTP server closed the connection"
                                  : "SMTP server did not answer: \(String(cString: strerror(errno)))")
                }
                buffer += chunk[..<count]
            }
        }
    }
}
