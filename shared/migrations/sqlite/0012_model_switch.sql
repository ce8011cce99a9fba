-- Model switches, as ../0013_model_switch.sql does for PostgreSQL (SQLite cannot add a
-- table constraint to an existing table; the store writes the five columns together).

ALTER TABLE collections ADD COLUMN next_physical TEXT;
ALTER TABLE collections ADD COLUMN next_model TEXT;
ALTER TABLE collections ADD COLUMN next_dim INTEGER CHECK (next_dim > 0);
ALTER TABLE collections ADD COLUMN next_job TEXT;
ALTER TABLE collections ADD COLUMN next_started_at INTEGER;
