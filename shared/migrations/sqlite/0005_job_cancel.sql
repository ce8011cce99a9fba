-- Jobs may end 'cancelled', as ../0006_job_cancel.sql does for PostgreSQL. SQLite
-- cannot change a CHECK constraint in place, so the table is rebuilt the way its
-- documentation prescribes (create, copy, drop, rename); the migration runs with
-- foreign keys off and checks them before it commits (schema.rs).

CREATE TABLE jobs_new (
    job_id        TEXT    PRIMARY KEY,
    status        TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    priority      TEXT    NOT NULL CHECK (priority IN ('low', 'normal', 'high')),
    total         INTEGER NOT NULL CHECK (total >= 0),
    processed     INTEGER NOT NULL DEFAULT 0 CHECK (processed >= 0),
    failed        INTEGER NOT NULL DEFAULT 0 CHECK (failed >= 0),
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    completed_at  INTEGER,
    error_message TEXT,
    published_at  INTEGER,
    CONSTRAINT jobs_progress_within_total CHECK (processed + failed <= total)
) STRICT;

INSERT INTO jobs_new (job_id, status, priority, total, processed, failed, created_at, started_at, completed_at, error_message, published_at)
    SELECT job_id, status, priority, total, processed, failed, created_at, started_at, completed_at, error_message, published_at
    FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;

CREATE INDEX jobs_active_created_idx ON jobs (created_at, job_id)
    WHERE status IN ('queued', 'running');
CREATE INDEX jobs_finished_completed_idx ON jobs (completed_at DESC, job_id DESC)
    WHERE status IN ('completed', 'failed', 'cancelled');
CREATE INDEX jobs_unpublished_idx ON jobs (created_at)
    WHERE published_at IS NULL AND status IN ('queued', 'running');
CREATE INDEX jobs_created_idx ON jobs (created_at DESC, job_id DESC);
