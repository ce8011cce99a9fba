-- Attempts per item, as ../0004_item_attempts.sql does for PostgreSQL.

ALTER TABLE job_items ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0);
