import Foundation
import Journal

/// One outbox row rendered for its channel: the JSON body of a webhook (generic, Slack or
/// Discord) or an e-mail. Pure: the senders only move these bytes.
struct NotificationMessage: Sendable {
    let key: String
    let event: NotificationEvent

    init(_ notification: OutboxNotification) {
        key = notification.idempotencyKey
        event = notification.event
    }

    init(key: String, event: NotificationEvent) {
        self.key = key
        self.event = event
    }

    /// The VM's name, else the source file's name; escaped, since whoever drops a file chooses it.
    private var subject: String {
        UntrustedText.escaped(event.vmName ?? URL(fileURLWithPath: event.sourcePath).lastPathComponent)
    }

    var title: String {
        switch event.event {
        case "success": "✅ hyper2kvm: job \(event.jobID) (\(subject)) converted"
        case "failure": "❌ hyper2kvm: job \(event.jobID) (\(subject)) failed"
        case "stalled": "⚠️ hyper2kvm: job \(event.jobID) (\(subject)) stalled in stage \(event.stage ?? "?")"
        default: "hyper2kvm: job \(event.jobID) (\(subject)): \(event.event)"
        }
    }

    /// The lines every format shows, all single-line and escaped.
    var lines: [String] {
        var lines = [title, "source: \(UntrustedText.escaped(event.sourcePath))"]
        if let stage = event.stage { lines.append("stage: \(stage)") }
        if let detail = event.detail {
            lines.append((event.event == "failure" ? "error: " : event.event == "success" ? "output: " : "")
                + UntrustedText.escaped(detail))
        }
        lines.append("at: \(event.at)")
        lines.append("idempotency key: \(key)")
        return lines
    }

    /// The webhook body for `type`: the event's facts for `generic`, Slack's `text`, Discord's
    /// `content` (Discord caps it at 2000 characters). The key is in each body and in the header.
    func webhookBody(_ type: NotificationSettings.WebhookType) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let text = lines.joined(separator: "\n")
        switch type {
        case .generic:
            struct Generic: Encodable {
                let idempotency_key: String, event: String, title: String, job_id: Int64, source_path: String
                let vm_name: String?, state: String, stage: String?, detail: String?, at: String, source = "hyper2kvm"
            }
            return try encoder.encode(Generic(
                idempotency_key: key, event: event.event, title: title, job_id: event.jobID, source_path: event.sourcePath,
                vm_name: event.vmName, state: event.state, stage: event.stage, detail: event.detail, at: event.at))
        case .slack:
            return try encoder.encode(["text": text])
        case .discord:
            return try encoder.encode(["content": String(text.prefix(2000))])
        }
    }

    /// An RFC 5322 message with CRLF line ends, before dot-stuffing (`SMTPClient` does that).
    /// Headers are ASCII: anything else in the subject becomes "?"; the body is UTF-8.
    func email(from: String, to: [String], date: Date = Date()) -> String {
        let subject = String(String.UnicodeScalarView(title.unicodeScalars.map { $0.isASCII && $0.value >= 32 && $0.value != 127 ? $0 : "?" }))
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        let headers = [
            "From: <\(from)>", "To: " + to.map { "<\($0)>" }.joined(separator: ", "),
            "Subject: \(subject)", "Date: \(formatter.string(from: date))",
            // A receiver that sees the same Message-ID twice (after a crash between sending and
            // marking) can drop the copy.
            "Message-ID: <\(key)@hyper2kvm>", "Idempotency-Key: \(key)",
            "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit",
        ]
        return (headers + [""] + lines).joined(separator: "\r\n") + "\r\n"
    }
}
