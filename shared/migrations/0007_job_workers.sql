-- Which workers worked on a job and how much: one row per (job, worker), kept by
-- apply_events from the events' `worker`, so a job's status lists its workers
-- without scanning its items. Goes with its job.

CREATE TABLE job_workers (
    job_id           text        NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    worker_id        text        NOT NULL,
    images_processed integer     NOT NULL DEFAULT 0 CHECK (images_processed >= 0),
    images_failed    integer     NOT NULL DEFAULT 0 CHECK (images_failed >= 0),
    last_seen_at     timestamptz NOT NULL,
    PRIMARY KEY (job_id, worker_id)
);
