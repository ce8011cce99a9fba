-- Reading single items' outcomes: a job's items by state in point_id order (the
-- keyset pages of job_items), its failed items counted by kind on every status
-- request, and the failed items a retry queues again. The primary key
-- (job_id, point_id) serves listings without a state.

CREATE INDEX job_items_job_state_idx ON job_items (job_id, state, point_id);
