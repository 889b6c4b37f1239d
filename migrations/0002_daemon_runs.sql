-- hyper2kvm journal, schema version 2: one row per daemon run, so `hyper2kvm status`
-- can say which daemon owns the journal, since when, and with which configuration.
CREATE TABLE daemon_runs (
    id          INTEGER PRIMARY KEY,
    pid         INTEGER NOT NULL,
    started_at  TEXT NOT NULL,
    -- The configuration files, in the order they were read (later ones win), one per line.
    config      TEXT NOT NULL,
    watch_dir   TEXT NOT NULL,
    output_dir  TEXT NOT NULL,
    stopped_at  TEXT
) STRICT;
