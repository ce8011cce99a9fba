-- A job can be cancelled: its pending items are not embedded (workers ack their tasks
-- without work), its claims are released, and it ends as 'cancelled'. Cancelled jobs
-- are finished jobs: listed with them and deleted after jobs.retention_days with them.

ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled'));

DROP INDEX jobs_finished_completed_idx;
CREATE INDEX jobs_finished_completed_idx ON jobs (completed_at DESC, job_id DESC)
    WHERE status IN ('completed', 'failed', 'cancelled');

-- The jobs listing pages newest first.
CREATE INDEX jobs_created_idx ON jobs (created_at DESC, job_id DESC);
