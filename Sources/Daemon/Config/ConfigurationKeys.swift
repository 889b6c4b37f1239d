import Yams
import Stages

/// How one configuration key is read and documented. The table in `ConfigurationKeys.all` is
/// the single list of accepted keys: the loader, `config check` and the README's
/// configuration table (`ConfigurationReference`) derive from it.
struct ConfigurationKey: Sendable {
    enum Status: Sendable {
        case implemented
        /// Known, but starting with an active value fails: never silently ignored.
        case notImplemented(String)
        /// Accepted by the earlier implementation, replaced here; always an error.
        case replaced(String)
    }

    let name: String
    let aliases: [String]
    let type: String
    /// The default as the README states it ("—" when there is none).
    let defaultValue: String
    /// What the key does: the README's "meaning" column, one or more sentences.
    let summary: String
    let status: Status
    let apply: @Sendable (ConfigurationValue, inout Configuration) throws(ConfigurationValue.Mismatch) -> Void
    /// For `notImplemented` keys: whether this value asks for the missing behaviour.
    let isActive: @Sendable (ConfigurationValue) -> Bool

    init(_ name: String, aliases: [String] = [], type: String, default defaultValue: String = "—", _ summary: String,
         status: Status = .implemented,
         isActive: @escaping @Sendable (ConfigurationValue) -> Bool = { _ in true },
         apply: @escaping @Sendable (ConfigurationValue, inout Configuration) throws(ConfigurationValue.Mismatch) -> Void) {
        self.name = name
        self.aliases = aliases
        self.type = type
        self.defaultValue = defaultValue
        self.summary = summary
        self.status = status
        self.isActive = isActive
        self.apply = apply
    }
}

enum ConfigurationKeys {
    static let fileStableTimeoutReason =
        "replaced by file_stable_seconds: hyper2kvm never gives up on a file that is still being written"

    static func lookup(_ name: String) -> ConfigurationKey? {
        all.first { $0.name == name || $0.aliases.contains(name) }
    }

    static var allNames: [String] { all.flatMap { [$0.name] + $0.aliases } }
}

/// `libvirt_network` and `libvirt_bridge` exclude each other, whichever comes first.
enum LibvirtKeyCheck {
    static func networkAndBridge(_ options: ConversionOptions) throws(ConfigurationValue.Mismatch) {
        if let conflict = options.libvirtNetworkConflict {
            throw ConfigurationValue.Mismatch(expected: "only one of libvirt_network and libvirt_bridge (\(conflict))")
        }
    }
}

enum RetryPolicyReader {
    static func read(_ value: ConfigurationValue) throws(ConfigurationValue.Mismatch) -> Configuration.RetryPolicy {
        guard let mapping = value.node.mapping else {
            throw ConfigurationValue.Mismatch(expected: "a mapping with enabled, max_retries, retry_delay, backoff_multiplier")
        }
        var policy = Configuration.RetryPolicy()
        for (keyNode, node) in mapping {
            let sub = ConfigurationValue(node: node)
            switch keyNode.string {
            case "enabled": policy.enabled = try sub.bool()
            case "max_retries": policy.maxRetries = try sub.int(in: 0...100)
            case "retry_delay": policy.retryDelaySeconds = try sub.number(min: 0)
            case "backoff_multiplier": policy.backoffMultiplier = try sub.number(min: 1)
            default:
                throw ConfigurationValue.Mismatch(expected: "only enabled, max_retries, retry_delay, backoff_multiplier (got '\(keyNode.string ?? "?")')")
            }
        }
        return policy
    }
}
