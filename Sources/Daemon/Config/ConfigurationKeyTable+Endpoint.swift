/// The HTTP endpoint's keys (issue 20), kept beside the main table so that table stays short.
extension ConfigurationKeys {
    static let endpointKeys: [ConfigurationKey] = [
        .init("http_listen", type: "`HOST:PORT`, `[IPV6]:PORT`, `unix:PATH` or `off`",
              default: "`127.0.0.1:\(HTTPListen.defaultPort)`", """
                  where the daemon serves `/metrics` (Prometheus), `/healthz`, `/readyz`, `/api/v1/jobs` and the \
                  live status page `/`. No authentication: loopback or a unix socket unless you put a proxy in \
                  front (any other address is logged as a warning). IP literals only, no host names; quote the \
                  IPv6 form (`"[::1]:8718"`: unquoted, YAML reads a list). `false` is the same as `off`. A port already in use is logged and the daemon runs on without the endpoint.
                  """) { value, config throws(ConfigurationValue.Mismatch) in
            if value.node.bool == false, case .scalar(let scalar) = value.node, scalar.style == .plain {
                config.httpListen = .off
                return
            }
            guard let listen = HTTPListen.parse(try value.string()) else {
                throw ConfigurationValue.Mismatch(expected: "HOST:PORT (an IP literal), [IPV6]:PORT, unix:/absolute/path or off")
            }
            config.httpListen = listen
        },
    ]
}
