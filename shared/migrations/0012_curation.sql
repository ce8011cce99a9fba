-- Duplicate analyses (run under a lease, like directory walks) and archives of moved
-- files, whose manifest a restore undoes (see shared/src/jobs/curation.rs).
CREATE TABLE duplicate_analyses (
    task_id      text        PRIMARY KEY,
    collection   text        NOT NULL,
    threshold    real        NOT NULL,
    state        text        NOT NULL CHECK (state IN ('running', 'completed', 'failed')),
    scanned      bigint      NOT NULL DEFAULT 0,
    total        bigint      NOT NULL DEFAULT 0,
    report       jsonb,
    error        text,
    owner        text,
    heartbeat_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX duplicate_analyses_running ON duplicate_analyses (created_at) WHERE state = 'running';

CREATE TABLE archives (
    archive_id  text        PRIMARY KEY,
    kind        text        NOT NULL,
    collection  text        NOT NULL,
    manifest    jsonb       NOT NULL,
    created_at  timestamptz NOT NULL,
    restored_at timestamptz
);
