-- The embedded job store (SqliteJobStore): the same tables and rules as the
-- PostgreSQL schema (../0001_init.sql, ../0002_requeue.sql). Applied once by
-- SqliteJobStore::open (see schema_migrations).
--
-- Times are INTEGER microseconds since the Unix epoch, UTC: they sort as numbers
-- and round-trip exactly through chrono. Point ids are their 16 UUID bytes.

CREATE TABLE jobs (
    job_id        TEXT    PRIMARY KEY,
    status        TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    priority      TEXT    NOT NULL CHECK (priority IN ('low', 'normal', 'high')),
    total         INTEGER NOT NULL CHECK (total >= 0),
    processed     INTEGER NOT NULL DEFAULT 0 CHECK (processed >= 0),
    failed        INTEGER NOT NULL DEFAULT 0 CHECK (failed >= 0),
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    completed_at  INTEGER,
    error_message TEXT,
    -- Progress can never pass the number of items, whatever events arrive.
    CONSTRAINT jobs_progress_within_total CHECK (processed + failed <= total)
) STRICT;

CREATE INDEX jobs_active_created_idx ON jobs (created_at, job_id)
    WHERE status IN ('queued', 'running');
CREATE INDEX jobs_finished_completed_idx ON jobs (completed_at DESC, job_id DESC)
    WHERE status IN ('completed', 'failed');

CREATE TABLE job_items (
    job_id       TEXT    NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    point_id     BLOB    NOT NULL CHECK (length(point_id) = 16),
    path         TEXT    NOT NULL,
    -- File stamp seen at submission; NULL when the API could not read the file.
    size         INTEGER,
    mtime_ns     INTEGER,
    state        TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'indexed', 'failed')),
    failure_kind TEXT,
    reason       TEXT,
    finished_at  INTEGER,
    -- When the item was last put on the task queue (requeue_stale_items).
    queued_at    INTEGER NOT NULL,
    PRIMARY KEY (job_id, point_id),
    CONSTRAINT job_items_finished_consistent CHECK ((state = 'pending') = (finished_at IS NULL))
) STRICT;

CREATE INDEX job_items_pending_queued_idx ON job_items (queued_at) WHERE state = 'pending';

-- One row per point queued in an active job: the primary key makes the "not
-- already queued" check and the claim a single INSERT ... ON CONFLICT DO NOTHING.
CREATE TABLE pending_points (
    point_id BLOB PRIMARY KEY CHECK (length(point_id) = 16),
    job_id   TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX pending_points_job_idx ON pending_points (job_id);

-- Latest finished attempt per point, for the failed-image count and last update.
CREATE TABLE point_outcomes (
    point_id    BLOB    PRIMARY KEY CHECK (length(point_id) = 16),
    state       TEXT    NOT NULL CHECK (state IN ('indexed', 'failed')),
    finished_at INTEGER NOT NULL
) STRICT;
CREATE INDEX point_outcomes_failed_idx ON point_outcomes (point_id) WHERE state = 'failed';
CREATE INDEX point_outcomes_finished_idx ON point_outcomes (finished_at);
