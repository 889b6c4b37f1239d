import Foundation
import Journal

/// A configuration value that must never reach a log, an error or `status`: a webhook URL
/// (Slack and Discord put the token in the path) or the SMTP password. Printing it, dumping
/// it or interpolating it shows "<redacted>"; only the senders read `revealed`.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    let revealed: String

    init(_ value: String) { revealed = value }

    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
    public var customMirror: Mirror { Mirror(self, children: [:]) }
}

/// The `notifications` mapping (the Python tool's keys), read by `NotificationSettingsReader`.
public struct NotificationSettings: Sendable, Equatable {
    public enum WebhookType: String, Sendable, CaseIterable {
        case generic, slack, discord
    }

    public var enabled = false
    public var onSuccess = false
    public var onFailure = true
    public var onStalled = true
    var webhookURL: Secret?
    public var webhookType = WebhookType.generic
    public var emailEnabled = false
    public var emailSMTPHost: String?
    public var emailSMTPPort = 25
    public var emailFrom: String?
    public var emailTo: [String] = []
    public var emailUsername: String?
    var emailPassword: Secret?

    public init() {}

    /// The channels the outbox enqueues for; none unless enabled.
    public var channels: [String] {
        guard enabled else { return [] }
        return (webhookURL == nil ? [] : ["webhook"]) + (emailEnabled ? ["email"] : [])
    }

    public var policy: NotificationPolicy {
        NotificationPolicy(channels: channels, onSuccess: onSuccess, onFailure: onFailure, onStalled: onStalled)
    }

    /// The webhook as it may be shown: scheme, host and port, never the path or query that
    /// carry the token.
    public var webhookDisplay: String? {
        guard let url = webhookURL.flatMap({ URL(string: $0.revealed) }), let scheme = url.scheme, let host = url.host
        else { return nil }
        return "\(scheme)://\(host)\(url.port.map { ":\($0)" } ?? "")/…"
    }

    /// What `config check` prints for the key: no secret.
    var summary: String {
        guard enabled else { return "off" }
        var parts = ["on_success=\(onSuccess) on_failure=\(onFailure) on_stalled=\(onStalled)"]
        if let display = webhookDisplay { parts.append("webhook=\(webhookType.rawValue) \(display)") }
        if emailEnabled {
            parts.append("email=smtp://\(emailSMTPHost ?? "?"):\(emailSMTPPort) → \(emailTo.joined(separator: ","))"
                + (emailPassword == nil ? "" : " (password set)"))
        }
        return parts.joined(separator: "; ")
    }
}

/// Reads the `notifications` mapping. Its errors never quote a value: any of them may be a secret.
enum NotificationSettingsReader {
    static let keys = ["enabled", "on_success", "on_failure", "on_stalled", "webhook_url", "webhook_type",
                       "email_enabled", "email_smtp_host", "email_smtp_port", "email_from", "email_to",
                       "email_username", "email_password", "email_starttls"]

    static func read(_ value: ConfigurationValue) throws(ConfigurationValue.Mismatch) -> NotificationSettings {
        guard let mapping = value.node.mapping else {
            throw ConfigurationValue.Mismatch(expected: "a mapping with " + keys.joined(separator: ", "))
        }
        var settings = NotificationSettings()
        for (keyNode, node) in mapping {
            let key = keyNode.string ?? "?"
            do throws(ConfigurationValue.Mismatch) {
                try apply(key, ConfigurationValue(node: node), to: &settings)
            } catch {
                // Says which sub-key, without its value.
                throw ConfigurationValue.Mismatch(expected: error.expected.hasPrefix("only ") ? error.expected : "\(key): \(error.expected)")
            }
        }
        try check(settings)
        return settings
    }

    private static func apply(_ key: String, _ sub: ConfigurationValue,
                              to settings: inout NotificationSettings) throws(ConfigurationValue.Mismatch) {
        switch key {
        case "enabled": settings.enabled = try sub.bool()
        case "on_success": settings.onSuccess = try sub.bool()
        case "on_failure": settings.onFailure = try sub.bool()
        case "on_stalled": settings.onStalled = try sub.bool()
        case "webhook_url": settings.webhookURL = sub.isFalseOrNull ? nil : Secret(try webhookURL(sub))
        case "webhook_type":
            let raw = try sub.oneOf(NotificationSettings.WebhookType.allCases.map(\.rawValue))
            settings.webhookType = NotificationSettings.WebhookType(rawValue: raw) ?? .generic
        case "email_enabled": settings.emailEnabled = try sub.bool()
        case "email_smtp_host": settings.emailSMTPHost = try sub.string()
        case "email_smtp_port": settings.emailSMTPPort = try sub.int(in: 1...65535)
        case "email_from": settings.emailFrom = try address(sub)
        case "email_to": settings.emailTo = try addresses(sub)
        case "email_username": settings.emailUsername = try sub.string()
        case "email_password":
            if sub.isFalseOrNull { settings.emailPassword = nil; return }
            guard case .scalar(let scalar) = sub.node else { throw ConfigurationValue.Mismatch(expected: "a string") }
            settings.emailPassword = Secret(scalar.string)
        case "email_starttls":
            // The SMTP client speaks plain SMTP only (README, "Notifications"): asking for TLS
            // must fail rather than send the mail, and a password, in clear.
            if try sub.bool() {
                throw ConfigurationValue.Mismatch(expected: "false (STARTTLS is not supported: send through a "
                    + "relay on loopback, such as the host's own MTA, which handles TLS)")
            }
        default:
            throw ConfigurationValue.Mismatch(expected: "only " + keys.joined(separator: ", ") + " (got '\(key)')")
        }
    }

    private static func check(_ settings: NotificationSettings) throws(ConfigurationValue.Mismatch) {
        guard settings.enabled else { return }
        if settings.webhookURL == nil && !settings.emailEnabled {
            throw ConfigurationValue.Mismatch(expected: "a webhook_url or email_enabled: true when enabled is true")
        }
        guard settings.emailEnabled else { return }
        guard let host = settings.emailSMTPHost, !host.isEmpty, settings.emailFrom != nil, !settings.emailTo.isEmpty else {
            throw ConfigurationValue.Mismatch(expected: "email_smtp_host, email_from and email_to when email_enabled is true")
        }
        if settings.emailPassword != nil, !["localhost", "127.0.0.1", "::1"].contains(host.lowercased()) {
            throw ConfigurationValue.Mismatch(expected: "email_password only with a loopback email_smtp_host (localhost): "
                + "the SMTP client has no TLS and would send the password in clear")
        }
        if settings.emailPassword != nil && settings.emailUsername == nil {
            throw ConfigurationValue.Mismatch(expected: "email_username with email_password")
        }
    }

    private static func webhookURL(_ value: ConfigurationValue) throws(ConfigurationValue.Mismatch) -> String {
        let expected = "an http:// or https:// URL with a host (the value is not shown: it may hold a token)"
        guard case .scalar(let scalar) = value.node, let url = URL(string: scalar.string),
              ["http", "https"].contains(url.scheme?.lowercased() ?? ""), let host = url.host, !host.isEmpty
        else { throw ConfigurationValue.Mismatch(expected: expected) }
        return scalar.string
    }

    /// An address goes into an SMTP command line: no CR, LF, angle brackets or spaces.
    private static func address(_ value: ConfigurationValue) throws(ConfigurationValue.Mismatch) -> String {
        guard case .scalar(let scalar) = value.node, isAddress(scalar.string) else {
            throw ConfigurationValue.Mismatch(expected: "an e-mail address (user@host, no spaces or angle brackets)")
        }
        return scalar.string
    }

    private static func addresses(_ value: ConfigurationValue) throws(ConfigurationValue.Mismatch) -> [String] {
        if case .sequence(let items) = value.node {
            var list: [String] = []
            for item in items { list.append(try address(ConfigurationValue(node: item))) }
            return list
        }
        // The Python tool takes one address, or several separated by commas.
        guard case .scalar(let scalar) = value.node else { throw ConfigurationValue.Mismatch(expected: "e-mail addresses") }
        var list: [String] = []
        for part in scalar.string.split(separator: ",") {
            let text = part.trimmingCharacters(in: .whitespaces)
            guard isAddress(text) else {
                throw ConfigurationValue.Mismatch(expected: "e-mail addresses (user@host, comma-separated or a list)")
            }
            list.append(text)
        }
        return list
    }

    static func isAddress(_ text: String) -> Bool {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && !parts[1].isEmpty && text.utf8.count <= 254
            && text.unicodeScalars.allSatisfy { $0.value > 32 && $0.value < 127 && !"<>\"(),;:\\[]".unicodeScalars.contains($0) }
    }
}
