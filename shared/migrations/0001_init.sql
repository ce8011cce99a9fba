-- Jobs, their items, and the claim table that keeps a point queued in at most one
-- active job. Applied once by PostgresJobStore::connect (see schema_migrations).

CREATE TABLE jobs (
    job_id        text        PRIMARY KEY,
    status        text        NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    priority      text        NOT NULL CHECK (priority IN ('low', 'normal', 'high')),
    total         integer     NOT NULL CHECK (total >= 0),
    processed     integer     NOT NULL DEFAULT 0 CHECK (processed >= 0),
    failed        integer     NOT NULL DEFAULT 0 CHECK (failed >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    completed_at  timestamptz,
    error_message text,
    -- Progress can never pass the number of items, whatever events arrive.
    CONSTRAINT jobs_progress_within_total CHECK (processed + failed <= total)
);

-- Listing indexes: the status endpoint reads active jobs oldest first and
-- finished jobs newest first.
CREATE INDEX jobs_active_created_idx ON jobs (created_at, job_id)
    WHERE status IN ('queued', 'running');
CREATE INDEX jobs_finished_completed_idx ON jobs (completed_at DESC, job_id DESC)
    WHERE status IN ('completed', 'failed');

CREATE TABLE job_items (
    job_id       text        NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    point_id     uuid        NOT NULL,
    path         text        NOT NULL,
    -- File stamp seen at submission; NULL when the API could not read the file.
    size         bigint,
    mtime_ns     bigint,
    state        text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'indexed', 'failed')),
    failure_kind text,
    reason       text,
    finished_at  timestamptz,
    PRIMARY KEY (job_id, point_id),
    CONSTRAINT job_items_finished_consistent CHECK ((state = 'pending') = (finished_at IS NULL))
);

-- One row per point queued in an active job. The primary key makes the
-- "not already queued" check and the claim a single atomic INSERT ... ON CONFLICT.
CREATE TABLE pending_points (
    point_id uuid PRIMARY KEY,
    job_id   text NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE
);
CREATE INDEX pending_points_job_idx ON pending_points (job_id);

-- Latest finished attempt per point, kept by apply_events, so counting images
-- whose latest attempt failed (and the last update time) does not scan the whole
-- item history on every status request.
CREATE TABLE point_outcomes (
    point_id    uuid        PRIMARY KEY,
    state       text        NOT NULL CHECK (state IN ('indexed', 'failed')),
    finished_at timestamptz NOT NULL
);
CREATE INDEX point_outcomes_failed_idx ON point_outcomes (point_id) WHERE state = 'failed';
CREATE INDEX point_outcomes_finished_idx ON point_outcomes (finished_at);
