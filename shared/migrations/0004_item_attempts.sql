-- How many times a worker started on an item (its batch entered decode or
-- inference). Raised by count_attempts; a worker gives an item up as
-- retries_exhausted from this count, so crashes are charged only to the items
-- that were being worked on, not to everything a worker had prefetched.

ALTER TABLE job_items ADD COLUMN attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0);
