-- Workers per job, as ../0007_job_workers.sql does for PostgreSQL.

CREATE TABLE job_workers (
    job_id           TEXT    NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    worker_id        TEXT    NOT NULL,
    images_processed INTEGER NOT NULL DEFAULT 0 CHECK (images_processed >= 0),
    images_failed    INTEGER NOT NULL DEFAULT 0 CHECK (images_failed >= 0),
    last_seen_at     INTEGER NOT NULL,
    PRIMARY KEY (job_id, worker_id)
) STRICT;
