-- Reading single items' outcomes, as ../0003_item_outcomes.sql does for PostgreSQL:
-- a job's items by state in point_id order, its failed items counted by kind, and
-- the failed items a retry queues again.

CREATE INDEX job_items_job_state_idx ON job_items (job_id, state, point_id);
