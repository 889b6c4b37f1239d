-- hyper2kvm journal, schema version 4: checkpoints inside a stage, so a stage that moves
-- bytes (convert's chunked copy) resumes at its last durable chunk after a crash instead of
-- starting the whole disk again. The value is the stage's own JSON; the stage checks it
-- against the files it describes before trusting it (docs/crash-safety.md).
CREATE TABLE stage_checkpoints (
    job_id     INTEGER NOT NULL REFERENCES jobs (id),
    stage      TEXT NOT NULL,
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (job_id, stage, name)
) STRICT;
