/// The rows of the key table for notifications and stall detection, kept here so the table
/// stays readable (and under the size limit); `ConfigurationKeys.all` lists them in place.
extension ConfigurationKeys {
    static let notificationsKey = ConfigurationKey(
        "notifications", type: "mapping", default: "off", """
            webhook and e-mail notifications (the Python tool's keys): `enabled`, `on_success` (default false), \
            `on_failure` (true), `on_stalled` (true), `webhook_url` (http or https), `webhook_type` \
            (`generic`|`slack`|`discord`), `email_enabled`, `email_smtp_host`, `email_smtp_port` (25), \
            `email_from`, `email_to` (one address, comma-separated, or a list), `email_username`, \
            `email_password` (only with a loopback host: the SMTP client is plain SMTP, no TLS), \
            `email_starttls` (must be false). Each notification is written to the journal's outbox in the \
            transaction of the transition that causes it and delivered at least once with backoff, with an \
            `Idempotency-Key`; see "Notifications" below. The URL and password are never logged or shown.
            """) { value, config throws(ConfigurationValue.Mismatch) in
        config.notifications = try NotificationSettingsReader.read(value)
    }

    static let stalledAfterSeconds = 1800.0

    static let stalledAfterSecondsKey = ConfigurationKey(
        "stalled_after_seconds", type: "number", default: "1800", """
            a running stage whose progress has not moved for this long is reported as stalled: in `status` \
            (and `stalledSince` in `status --json`) and by an `on_stalled` notification, once per stall. \
            Stages that report no progress (the guest fix) count from their start.
            """) { value, config throws(ConfigurationValue.Mismatch) in
        config.stalledAfterSeconds = try value.number(min: 1)
    }
}
