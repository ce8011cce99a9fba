-- Webhook deliveries, as ../0009_webhooks.sql does for PostgreSQL. No foreign key to
-- jobs: a row is written before its job (see shared/src/jobs/webhooks.rs).

CREATE TABLE webhook_deliveries (
    delivery_id      TEXT    PRIMARY KEY,
    job_id           TEXT    NOT NULL,
    url              TEXT    NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'waiting'
                     CHECK (state IN ('waiting', 'pending', 'delivered', 'failed')),
    event_type       TEXT,
    payload          TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at       INTEGER NOT NULL,
    first_attempt_at INTEGER,
    last_attempt_at  INTEGER,
    next_attempt_at  INTEGER,
    lease_until      INTEGER,
    last_status      INTEGER,
    last_error       TEXT,
    finished_at      INTEGER,
    UNIQUE (job_id, url)
) STRICT;

-- What the dispatcher polls: only open deliveries.
CREATE INDEX webhook_deliveries_open ON webhook_deliveries (state, next_attempt_at)
    WHERE state IN ('waiting', 'pending');
