/// Where the daemon's HTTP endpoint (metrics, health, jobs API, status page) listens:
/// `http_listen`. Loopback by default: the endpoint has no authentication, so reaching it
/// from another host is the operator's explicit choice (and is logged as a warning).
public enum HTTPListen: Sendable, Equatable, CustomStringConvertible {
    case off
    /// An IPv4 or IPv6 literal and a port. `host` is written without brackets.
    case tcp(host: String, port: Int)
    case unixSocket(path: String)

    /// Outside the 9100–9999 range Prometheus' exporter list has used up, and away from
    /// 9090–9094 (Prometheus, Pushgateway, Alertmanager), so a node exporter or Prometheus
    /// on the same host does not collide with it.
    public static let defaultPort = 8718
    public static let `default` = HTTPListen.tcp(host: "127.0.0.1", port: defaultPort)

    public var description: String {
        switch self {
        case .off: "off"
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unixSocket(let path): "unix:\(path)"
        }
    }

    /// True for 127.0.0.0/8, ::1 and unix sockets: only this host can connect.
    public var isLocalOnly: Bool {
        switch self {
        case .off, .unixSocket: true
        case .tcp(let host, _): host == "::1" || host.hasPrefix("127.")
        }
    }

    /// Reads `HOST:PORT`, `[IPV6]:PORT`, `unix:/absolute/path` or `off`; nil when it is none of them.
    /// Host names are not accepted: what a name resolves to can change under the daemon.
    public static func parse(_ text: String) -> HTTPListen? {
        if text == "off" { return .off }
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard path.hasPrefix("/"), !path.contains("\0"), path.utf8.count < 108 else { return nil }
            return .unixSocket(path: path)
        }
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
            guard host.contains(":"), host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return nil }
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            let octets = host.split(separator: ".", omittingEmptySubsequences: false)
            guard octets.count == 4, octets.allSatisfy({ UInt8($0) != nil && $0.allSatisfy(Self.isDigit) }) else { return nil }
        }
        guard portText.allSatisfy(Self.isDigit), let port = Int(portText), (1...65535).contains(port) else { return nil }
        return .tcp(host: String(host), port: port)
    }

    private static func isDigit(_ character: Character) -> Bool { character.isASCII && character.isNumber }
}
