import Foundation
import Journal
import Testing
import TestSupport
@testable import Daemon

/// The `notifications` keys, the formats each channel gets, and secrets kept out of sight.
@Suite struct NotificationSettingsTests {
    static let token = "T000/B000/SECRET-TOKEN-xyz"
    static let password = "pa55-SECRET-word"

    func load(_ yaml: String) throws -> (Configuration?, [String]) {
        let scratch = try Scratch("notify-config")
        let path = scratch.path("c.yaml")
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        do {
            return (try ConfigurationLoader.load(files: [path]), [])
        } catch let error as ConfigurationErrors {
            return (nil, error.errors.map(\.description))
        }
    }

    @Test func thePythonToolsKeysAreRead() throws {
        let (loaded, errors) = try load("""
            notifications:
              enabled: true
              on_success: true
              on_failure: false
              on_stalled: true
              webhook_url: https://hooks.example.com/services/\(Self.token)
              webhook_type: slack
              email_enabled: true
              email_smtp_host: localhost
              email_smtp_port: 2525
              email_from: h2k@example.com
              email_to: a@example.com, b@example.com
              email_username: h2k
              email_password: \(Self.password)
            stalled_after_seconds: 90
            """)
        let c = try #require(loaded, "\(errors)")
        let n = c.notifications
        #expect(n.enabled && n.onSuccess && !n.onFailure && n.onStalled)
        #expect(n.webhookType == .slack && n.emailSMTPPort == 2525 && n.emailTo == ["a@example.com", "b@example.com"])
        #expect(n.channels == ["webhook", "email"])
        #expect(c.stalledAfterSeconds == 90)
        // Nothing that prints the configuration shows a secret.
        let shown = [EffectiveConfiguration.render(c), "\(c)", String(reflecting: c), n.summary]
        for text in shown {
            #expect(!text.contains("SECRET"), "\(text)")
        }
        #expect(EffectiveConfiguration.render(c).contains("webhook=slack https://hooks.example.com/…"))
    }

    @Test func mistakesAreRefusedWithoutQuotingTheValue() throws {
        let cases: [(String, String)] = [
            ("{enabled: true}", "a webhook_url or email_enabled: true"),
            ("{enabled: true, webhook_url: 'ftp://x/\(Self.token)'}", "an http:// or https:// URL"),
            ("{enabled: true, webhook_url: 'not a url \(Self.token)'}", "an http:// or https:// URL"),
            ("{webhook_type: teams}", "one of generic, slack, discord"),
            ("{colour: red}", "only enabled, on_success"),
            ("{enabled: true, email_enabled: true, email_smtp_host: localhost, email_from: a@b, email_to: c@d, email_starttls: true}",
             "STARTTLS is not supported"),
            ("{enabled: true, email_enabled: true, email_smtp_host: smtp.example.com, email_from: a@b, email_to: c@d, email_username: u, email_password: \(Self.password)}",
             "would send the password in clear"),
            ("{enabled: true, email_enabled: true, email_smtp_host: localhost, email_from: 'a@b\\r\\nRCPT TO:<x@y>', email_to: c@d}",
             "an e-mail address"),
            ("{enabled: true, email_enabled: true, email_smtp_host: localhost}", "email_smtp_host, email_from and email_to"),
        ]
        for (mapping, expected) in cases {
            let (loaded, errors) = try load("notifications: \(mapping)\n")
            #expect(loaded == nil, "\(mapping) was accepted")
            #expect(errors.contains { $0.contains(expected) }, "\(mapping): \(errors)")
            #expect(!errors.joined().contains("SECRET"), "\(errors)")
        }
        let (_, stall) = try load("stalled_after_seconds: 0\n")
        #expect(stall.contains { $0.contains("stalled_after_seconds") })
    }

    @Test func eachWebhookTypeCarriesTheKeyAndEscapesWhatTheDropperChose() throws {
        let event = NotificationEvent(event: "failure", jobID: 7, sourcePath: "/q/evil\n[fake] line.vmdk", vmName: nil,
                                      state: "failed", stage: "convert", detail: "boom \u{1b}[31m", at: "2026-12-06T21:00:00.000Z")
        let message = NotificationMessage(key: "hyper2kvm-job7-t42-webhook", event: event)
        let generic = try #require(try JSONSerialization.jsonObject(with: message.webhookBody(.generic)) as? [String: Any])
        #expect(generic["idempotency_key"] as? String == "hyper2kvm-job7-t42-webhook")
        #expect(generic["event"] as? String == "failure" && generic["job_id"] as? Int == 7)
        let slack = try #require(try JSONSerialization.jsonObject(with: message.webhookBody(.slack)) as? [String: String])
        let discord = try #require(try JSONSerialization.jsonObject(with: message.webhookBody(.discord)) as? [String: String])
        #expect(Array(slack.keys) == ["text"] && Array(discord.keys) == ["content"])
        for text in [slack["text"] ?? "", discord["content"] ?? ""] {
            #expect(text.contains("idempotency key: hyper2kvm-job7-t42-webhook"))
            #expect(text.contains("evil\\n[fake] line.vmdk") && text.contains("boom \\x1b[31m"), "\(text)")
            #expect(!text.contains("\u{1b}"))
        }
    }

    @Test func anEmailIsOneMessageWhateverThePathHolds() {
        let event = NotificationEvent(event: "success", jobID: 3, sourcePath: "/q/a\r\n.\r\nMAIL FROM:<x@y>.vmdk",
                                      vmName: "vm\r\nBcc: victim@example.com", state: "published", stage: nil,
                                      detail: "/out/vm", at: "2026-12-06T21:00:00.000Z")
        let message = NotificationMessage(key: "hyper2kvm-job3-t9-email", event: event)
        let text = message.email(from: "h2k@example.com", to: ["ops@example.com"])
        let headers = text.components(separatedBy: "\r\n\r\n")[0].components(separatedBy: "\r\n")
        #expect(headers.contains("Message-ID: <hyper2kvm-job3-t9-email@hyper2kvm>"))
        #expect(headers.contains("Idempotency-Key: hyper2kvm-job3-t9-email"))
        #expect(!headers.contains { $0.hasPrefix("Bcc:") }, "\(headers)")
        let stuffed = SMTPClient.dotStuffed(text)
        #expect(!stuffed.contains("\r\n.\r\n") && !stuffed.hasPrefix(".\r\n"))
        #expect(SMTPClient.dotStuffed("a\n.b\r\n..c\rd") == "a\r\n..b\r\n...c\r\nd\r\n")
    }

    @Test func secretsArePrintedRedacted() async {
        let secret = Secret("https://x/\(Self.token)")
        #expect("\(secret)" == "<redacted>" && String(reflecting: secret) == "<redacted>")
        var settings = NotificationSettings()
        settings.webhookURL = secret
        settings.emailPassword = Secret(Self.password)
        let senders = NotificationSenders(settings: settings)
        let cleaned = senders.redacted("failed POST https://x/\(Self.token) path /\(Self.token) with \(Self.password)")
        #expect(!cleaned.contains("SECRET"), "\(cleaned)")
        await senders.shutdown()
    }
}
