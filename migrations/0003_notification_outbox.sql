-- hyper2kvm journal, schema version 3: notifications that are never lost, and stalled stages.
--
-- A notification is a row of `notification_outbox`, inserted in the same transaction as the
-- transition (or the stall) that causes it, so a crash can never keep the one and lose the
-- other. The daemon's delivery service sends each row at least once, retrying with backoff,
-- and sets `delivered_at` when the receiver accepted it. `idempotency_key` is what the
-- receiver sees (header and body) to drop a second copy sent after a crash between sending
-- and marking.
CREATE TABLE notification_outbox (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    job_id          INTEGER REFERENCES jobs (id),
    -- 'webhook' or 'email': where it goes. The address itself is read from the configuration
    -- at delivery, so no secret (a webhook token, a password) is ever stored here.
    channel         TEXT NOT NULL,
    -- 'success', 'failure' or 'stalled'.
    event           TEXT NOT NULL,
    -- The facts of the event as a JSON object; each channel renders its own format from it.
    payload         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    delivered_at    TEXT
) STRICT;

CREATE INDEX notification_outbox_pending ON notification_outbox (next_attempt_at) WHERE delivered_at IS NULL;

-- When the stage in progress last moved (started, or its progress changed): what stall
-- detection measures. NULL on rows written before this migration (updated_at is used then).
ALTER TABLE jobs ADD COLUMN progressed_at TEXT;
-- Set when the stage in progress made no progress for the configured time; cleared by the
-- next progress or transition. `status` shows it; count stalled jobs with
-- SELECT count(*) FROM jobs WHERE stalled_at IS NOT NULL.
ALTER TABLE jobs ADD COLUMN stalled_at TEXT;
