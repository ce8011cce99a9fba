-- Seed 004's batch jobs: the images of a batch in request order, each an item of its
-- job (found by point id; the same image twice in a batch is one item).
CREATE TABLE batch_images (
    job_id   text    NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    idx      integer NOT NULL CHECK (idx >= 0),
    name     text    NOT NULL,
    point_id uuid    NOT NULL,
    PRIMARY KEY (job_id, idx)
);

-- When a worker first started on an item (seed 004's start_time), and where in the
-- object store its bytes are once it is done (processed_path; NULL for files on disk).
ALTER TABLE job_items ADD COLUMN started_at timestamptz;
ALTER TABLE job_items ADD COLUMN object_key text;
