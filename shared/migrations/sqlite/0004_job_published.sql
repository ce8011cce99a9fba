-- When a job's tasks were confirmed published, as ../0005_job_published.sql does
-- for PostgreSQL (microseconds since the Unix epoch, UTC).

ALTER TABLE jobs ADD COLUMN published_at INTEGER;
UPDATE jobs SET published_at = created_at;

CREATE INDEX jobs_unpublished_idx ON jobs (created_at)
    WHERE published_at IS NULL AND status IN ('queued', 'running');
