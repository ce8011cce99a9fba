-- Collections (shared/src/collections.rs): the catalog of named collections, each bound to
-- one model, the server-wide selected one, and the collection each job writes into
-- (NULL: the collection the deployment started with, vectors.collection).

CREATE TABLE collections (
    name        text        PRIMARY KEY,
    physical    text        NOT NULL UNIQUE,
    previous    text,
    model       text        NOT NULL,
    dim         integer     NOT NULL CHECK (dim > 0),
    distance    text        NOT NULL CHECK (distance IN ('Cosine', 'Dot', 'Euclid')),
    scoped_ids  boolean     NOT NULL,
    created_at  timestamptz NOT NULL
);

-- Server-wide settings changed through the API; one row per key.
CREATE TABLE server_settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

ALTER TABLE jobs ADD COLUMN collection text;

-- Images indexed with the vector of a point with the same content (seed 003's cache).
ALTER TABLE jobs ADD COLUMN from_cache integer NOT NULL DEFAULT 0 CHECK (from_cache >= 0);
ALTER TABLE job_items ADD COLUMN from_cache boolean NOT NULL DEFAULT false;

CREATE INDEX jobs_active_collection ON jobs (collection) WHERE status IN ('queued', 'running');
