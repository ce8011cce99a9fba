-- Duplicate analyses (run under a lease, like directory walks) and archives of moved
-- files, whose manifest a restore undoes (see shared/src/jobs/curation.rs).
CREATE TABLE duplicate_analyses (
    task_id      TEXT    PRIMARY KEY,
    collection   TEXT    NOT NULL,
    threshold    REAL    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('running', 'completed', 'failed')),
    scanned      INTEGER NOT NULL DEFAULT 0,
    total        INTEGER NOT NULL DEFAULT 0,
    report       TEXT,
    error        TEXT,
    owner        TEXT,
    heartbeat_at INTEGER,
    created_at   INTEGER NOT NULL,
    finished_at  INTEGER
) STRICT;
CREATE INDEX duplicate_analyses_running ON duplicate_analyses (created_at) WHERE state = 'running';

CREATE TABLE archives (
    archive_id  TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL,
    collection  TEXT    NOT NULL,
    manifest    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    restored_at INTEGER
) STRICT;
