-- Directory scans, as ../0008_job_scans.sql does for PostgreSQL.

ALTER TABLE jobs ADD COLUMN scanning INTEGER NOT NULL DEFAULT 0 CHECK (scanning IN (0, 1));

CREATE TABLE job_scans (
    job_id        TEXT    PRIMARY KEY REFERENCES jobs (job_id) ON DELETE CASCADE,
    dir           TEXT    NOT NULL,
    recursive     INTEGER NOT NULL CHECK (recursive IN (0, 1)),
    force_reindex INTEGER NOT NULL CHECK (force_reindex IN (0, 1)),
    prune_missing INTEGER NOT NULL CHECK (prune_missing IN (0, 1)),
    files_seen    INTEGER NOT NULL DEFAULT 0 CHECK (files_seen >= 0),
    images_found  INTEGER NOT NULL DEFAULT 0 CHECK (images_found >= 0),
    not_images    INTEGER NOT NULL DEFAULT 0 CHECK (not_images >= 0),
    unreadable    INTEGER NOT NULL DEFAULT 0 CHECK (unreadable >= 0),
    removed       INTEGER NOT NULL DEFAULT 0 CHECK (removed >= 0),
    done          INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1)),
    owner         TEXT,
    heartbeat_at  INTEGER
) STRICT;

CREATE INDEX job_scans_dir ON job_scans (dir);
CREATE INDEX job_scans_walking ON job_scans (heartbeat_at) WHERE done = 0;
