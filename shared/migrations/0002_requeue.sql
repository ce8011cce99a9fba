-- When each item was last put on the task queue, so requeue_stale_items can find
-- pending items whose task was lost. Existing items count as queued when this runs.

ALTER TABLE job_items ADD COLUMN queued_at timestamptz NOT NULL DEFAULT now();

-- Only pending items are ever requeued; the periodic reconcile usually finds none
-- stale, which this index answers without scanning the pending items.
CREATE INDEX job_items_pending_queued_idx ON job_items (queued_at) WHERE state = 'pending';
