-- When a job's tasks were confirmed published to the broker: set by the API once
-- the broker confirmed them, or by the reconcile when it published them itself.
-- A job still NULL after a short grace period lost its publish (the API crashed or
-- lost the broker between commit and publish); the reconcile publishes it whatever
-- the queue depth. Jobs from before this migration were published or failed.

ALTER TABLE jobs ADD COLUMN published_at timestamptz;
UPDATE jobs SET published_at = created_at;

-- The reconcile asks for unpublished active jobs every pass; usually there are none.
CREATE INDEX jobs_unpublished_idx ON jobs (created_at)
    WHERE published_at IS NULL AND status IN ('queued', 'running');
