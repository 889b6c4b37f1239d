-- hyper2kvm journal, schema version 1.
-- Applied once, inside one transaction, by the migration runner in Sources/Journal.
-- Times are ISO 8601 UTC text with milliseconds ("2026-01-31T12:00:00.000Z"), so they
-- sort as text and read the same in `sqlite3` as in `hyper2kvm history --json`.

-- One row per applied migration file; the runner reads it to apply each file exactly once.
CREATE TABLE schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
) STRICT;

-- A job's state is the to_state of its last transition; the copy here makes
-- "jobs in state X" an index lookup instead of a scan of the history.
CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY,
    source_path     TEXT NOT NULL,
    source_kind     TEXT NOT NULL,
    -- st_dev and st_ino are unsigned 64-bit; they are stored with the same bit pattern.
    source_dev      INTEGER NOT NULL,
    source_inode    INTEGER NOT NULL,
    source_size     INTEGER NOT NULL CHECK (source_size >= 0),
    source_mtime_ns INTEGER NOT NULL,
    source_ctime_ns INTEGER NOT NULL,
    source_sha256   TEXT CHECK (source_sha256 IS NULL
                                OR (length(source_sha256) = 64 AND source_sha256 NOT GLOB '*[^0-9a-f]*')),
    vm_name         TEXT,
    state           TEXT NOT NULL,
    stage           TEXT,
    attempt         INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    progress        REAL CHECK (progress IS NULL OR (progress >= 0.0 AND progress <= 1.0)),
    output_path     TEXT,
    error           TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
) STRICT;

CREATE INDEX jobs_by_state ON jobs (state);
CREATE INDEX jobs_by_identity ON jobs (source_dev, source_inode);
CREATE INDEX jobs_by_sha256 ON jobs (source_sha256) WHERE source_sha256 IS NOT NULL;

-- Append-only audit trail: every state change of every job, in commit order (id).
CREATE TABLE transitions (
    id         INTEGER PRIMARY KEY,
    job_id     INTEGER NOT NULL REFERENCES jobs (id),
    from_state TEXT,
    to_state   TEXT NOT NULL,
    stage      TEXT,
    attempt    INTEGER NOT NULL CHECK (attempt >= 0),
    at         TEXT NOT NULL,
    detail     TEXT
) STRICT;

CREATE INDEX transitions_by_job ON transitions (job_id, id);
-- Serves the "how many times was this stage started" count behind each attempt number.
CREATE INDEX transitions_by_job_stage ON transitions (job_id, stage, to_state);

-- Outputs of completed stages. A rerun of a stage replaces its rows in the same
-- transaction that records the new completion, so (job, stage, name) stays unique.
CREATE TABLE artifacts (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL REFERENCES jobs (id),
    stage       TEXT NOT NULL,
    name        TEXT NOT NULL,
    path        TEXT NOT NULL,
    size        INTEGER NOT NULL CHECK (size >= 0),
    sha256      TEXT CHECK (sha256 IS NULL
                            OR (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*')),
    attempt     INTEGER NOT NULL CHECK (attempt >= 0),
    recorded_at TEXT NOT NULL,
    verified_at TEXT,
    UNIQUE (job_id, stage, name)
) STRICT;
