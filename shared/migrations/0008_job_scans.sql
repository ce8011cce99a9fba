-- Directory scans (POST /api/v1/index/trigger): a job that grows while the API walks
-- a directory. `jobs.scanning` is what apply_events needs: a job whose walk is not
-- done never completes, however many of its items are finished. The scan's spec and
-- counters sit in job_scans; `owner` and `heartbeat_at` are the lease of the API
-- process walking it, so another one resumes the walk when that process is gone.

ALTER TABLE jobs ADD COLUMN scanning boolean NOT NULL DEFAULT false;

CREATE TABLE job_scans (
    job_id        text        PRIMARY KEY REFERENCES jobs (job_id) ON DELETE CASCADE,
    dir           text        NOT NULL,
    recursive     boolean     NOT NULL,
    force_reindex boolean     NOT NULL,
    prune_missing boolean     NOT NULL,
    files_seen    bigint      NOT NULL DEFAULT 0 CHECK (files_seen >= 0),
    images_found  bigint      NOT NULL DEFAULT 0 CHECK (images_found >= 0),
    not_images    bigint      NOT NULL DEFAULT 0 CHECK (not_images >= 0),
    unreadable    bigint      NOT NULL DEFAULT 0 CHECK (unreadable >= 0),
    removed       bigint      NOT NULL DEFAULT 0 CHECK (removed >= 0),
    done          boolean     NOT NULL DEFAULT false,
    owner         text,
    heartbeat_at  timestamptz
);

CREATE INDEX job_scans_dir ON job_scans (dir);
CREATE INDEX job_scans_walking ON job_scans (heartbeat_at) WHERE NOT done;
