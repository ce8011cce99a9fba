-- Collections, as ../0010_collections.sql does for PostgreSQL.

CREATE TABLE collections (
    name        TEXT    PRIMARY KEY,
    physical    TEXT    NOT NULL UNIQUE,
    previous    TEXT,
    model       TEXT    NOT NULL,
    dim         INTEGER NOT NULL CHECK (dim > 0),
    distance    TEXT    NOT NULL CHECK (distance IN ('Cosine', 'Dot', 'Euclid')),
    scoped_ids  INTEGER NOT NULL CHECK (scoped_ids IN (0, 1)),
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE server_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

ALTER TABLE jobs ADD COLUMN collection TEXT;

-- Images indexed with the vector of a point with the same content (seed 003's cache).
ALTER TABLE jobs ADD COLUMN from_cache INTEGER NOT NULL DEFAULT 0 CHECK (from_cache >= 0);
ALTER TABLE job_items ADD COLUMN from_cache INTEGER NOT NULL DEFAULT 0 CHECK (from_cache IN (0, 1));

CREATE INDEX jobs_active_collection ON jobs (collection) WHERE status IN ('queued', 'running');
