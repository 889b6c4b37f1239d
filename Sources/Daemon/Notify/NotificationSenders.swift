import AsyncHTTPClient
import Foundation
import Journal
import Synchronization
import Stages

/// Sends one rendered notification on its channel; throws `DeliveryFailure` (free of secrets)
/// when the receiver did not accept it.
protocol NotificationSending: Sendable {
    func send(_ message: NotificationMessage, channel: String) async throws
}

struct DeliveryFailure: Error, CustomStringConvertible {
    let description: String
}

/// The configured channels: the webhook through AsyncHTTPClient (swift-server's maintained
/// client: TLS, HTTP/2, timeouts), e-mail through `SMTPClient` on a thread of its own.
final class NotificationSenders: NotificationSending {
    let settings: NotificationSettings
    /// Made at the first webhook, so a daemon that stops before sending any (or has no
    /// webhook) has no client to shut down.
    private let client = Mutex<HTTPClient?>(nil)

    init(settings: NotificationSettings) {
        self.settings = settings
    }

    private var httpClient: HTTPClient {
        client.withLock { client in
            if let client { return client }
            // No redirects: a webhook that moved is a configuration to fix, and following one
            // could send the payload, with its key, somewhere nobody configured.
            var configuration = HTTPClient.Configuration(
                redirectConfiguration: .disallow,
                timeout: .init(connect: .seconds(10), read: .seconds(20)))
            // A refused connection fails the attempt at once: our own backoff, journaled, retries
            // it (the pool's retries would hold the request until its deadline).
            configuration.connectionPool.retryConnectionEstablishment = false
            let made = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            client = made
            return made
        }
    }

    func shutdown() async {
        let made = client.withLock { client -> HTTPClient? in
            defer { client = nil }
            return client
        }
        try? await made?.shutdown()
    }

    func send(_ message: NotificationMessage, channel: String) async throws {
        switch channel {
        case "webhook": try await sendWebhook(message)
        case "email": try await sendEmail(message)
        default:
            // A row for a channel this configuration no longer has stays in the outbox.
            throw DeliveryFailure(description: "channel '\(channel)' is not configured (notifications: webhook_url / email_enabled)")
        }
    }

    private func sendWebhook(_ message: NotificationMessage) async throws {
        guard let url = settings.webhookURL?.revealed else {
            throw DeliveryFailure(description: "channel 'webhook' is not configured (notifications: webhook_url)")
        }
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Idempotency-Key", value: message.key)
        request.headers.add(name: "User-Agent", value: "hyper2kvm/\(Hyper2KVMVersion.current)")
        request.body = .bytes(try message.webhookBody(settings.webhookType))
        let response: HTTPClientResponse
        do {
            response = try await httpClient.execute(request, timeout: .seconds(30))
        } catch {
            throw DeliveryFailure(description: "webhook \(settings.webhookDisplay ?? "?"): \(redacted(String(describing: error)))")
        }
        // Read (and drop) at most 64 KiB of the answer so the connection can be reused.
        _ = try? await response.body.collect(upTo: 64 << 10)
        guard (200..<300).contains(response.status.code) else {
            throw DeliveryFailure(description: "webhook \(settings.webhookDisplay ?? "?") answered HTTP \(response.status.code)")
        }
    }

    private func sendEmail(_ message: NotificationMessage) async throws {
        guard settings.emailEnabled, let host = settings.emailSMTPHost, let from = settings.emailFrom else {
            throw DeliveryFailure(description: "channel 'email' is not configured (notifications: email_enabled)")
        }
        let smtp = SMTPClient(host: host, port: settings.emailSMTPPort, username: settings.emailUsername,
                              password: settings.emailPassword)
        let to = settings.emailTo
        let text = message.email(from: from, to: to)
        do {
            try await BlockingWork.run("h2k-smtp") { try smtp.send(from: from, to: to, message: text) }
        } catch {
            throw DeliveryFailure(description: "e-mail via \(host):\(settings.emailSMTPPort): \(redacted(String(describing: error)))")
        }
    }

    /// A client's error text may quote the request: the URL's path and query (the token)
    /// and the password are cut out of it.
    func redacted(_ text: String) -> String {
        var text = text
        var secrets: [String] = []
        if let url = settings.webhookURL?.revealed {
            secrets.append(url)
            if let components = URLComponents(string: url) {
                secrets += [components.percentEncodedPath, components.percentEncodedQuery ?? ""].filter { $0.count > 1 }
            }
        }
        if let password = settings.emailPassword?.revealed, !password.isEmpty { secrets.append(password) }
        for secret in secrets.sorted(by: { $0.count > $1.count }) {
            text = text.replacingOccurrences(of: secret, with: "<redacted>")
        }
        return UntrustedText.escaped(text)
    }
}
