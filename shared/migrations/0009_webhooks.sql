-- Webhook deliveries (api.webhook_urls, a request's webhook_url): one row per job and
-- URL, so a delivery survives restarts and is made at least once. No foreign key to
-- jobs: the row is written before its job, so a crash between the two cannot leave a
-- job without its webhook (see shared/src/jobs/webhooks.rs). `lease_until` keeps two
-- API processes from sending the same attempt.

CREATE TABLE webhook_deliveries (
    delivery_id      text        PRIMARY KEY,
    job_id           text        NOT NULL,
    url              text        NOT NULL,
    state            text        NOT NULL DEFAULT 'waiting'
                     CHECK (state IN ('waiting', 'pending', 'delivered', 'failed')),
    event_type       text,
    payload          text,
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    first_attempt_at timestamptz,
    last_attempt_at  timestamptz,
    next_attempt_at  timestamptz,
    lease_until      timestamptz,
    last_status      integer,
    last_error       text,
    finished_at      timestamptz,
    UNIQUE (job_id, url)
);

CREATE INDEX webhook_deliveries_open ON webhook_deliveries (state, next_attempt_at)
    WHERE state IN ('waiting', 'pending');
