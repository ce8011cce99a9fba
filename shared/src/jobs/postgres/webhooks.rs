//! Webhook deliveries (see `jobs/webhooks.rs`) for PostgreSQL. A claim picks due rows
//! `FOR UPDATE SKIP LOCKED` and leases them in the same statement, so API processes
//! sharing the store never take the same delivery.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::PgResultExt;
use crate::jobs::{AttemptNext, JobStoreError, WebhookAttempt, WebhookDelivery, WebhookState};

const COLUMNS: &str = "d.delivery_id, d.job_id, d.url, d.state, d.event_type, d.payload, d.attempts, d.created_at, \
     d.first_attempt_at, d.last_attempt_at, d.next_attempt_at, d.last_status, d.last_error, d.finished_at";

pub(super) async fn add(
    client: &deadpool_postgres::Client,
    job_id: &str,
    urls: &[String],
    ids: &[String],
) -> Result<(), JobStoreError> {
    const CONTEXT: &str = "add_webhooks";
    let stmt = client
        .prepare_cached(
            "INSERT INTO webhook_deliveries (delivery_id, job_id, url)
             SELECT id, $1, url FROM unnest($2::text[], $3::text[]) AS t (url, id)
             ON CONFLICT (job_id, url) DO NOTHING",
        )
        .await
        .ctx(CONTEXT)?;
    client.execute(&stmt, &[&job_id, &urls, &ids]).await.ctx(CONTEXT)?;
    Ok(())
}

pub(super) async fn claim(
    client: &deadpool_postgres::Client,
    lease: Duration,
    limit: usize,
) -> Result<Vec<WebhookDelivery>, JobStoreError> {
    const CONTEXT: &str = "claim_webhooks";
    let lease_us = i64::try_from(lease.as_micros()).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = format!(
        "WITH due AS (
             SELECT d.delivery_id FROM webhook_deliveries d JOIN jobs j ON j.job_id = d.job_id
             WHERE ((d.state = 'waiting' AND j.status NOT IN ('queued', 'running'))
                    OR (d.state = 'pending' AND d.next_attempt_at <= now()))
               AND (d.lease_until IS NULL OR d.lease_until <= now())
             ORDER BY d.created_at, d.delivery_id LIMIT $2
             FOR UPDATE OF d SKIP LOCKED
         )
         UPDATE webhook_deliveries d SET state = 'pending',
             lease_until = now() + $1::int8 * interval '1 microsecond',
             next_attempt_at = COALESCE(d.next_attempt_at, now())
         FROM due WHERE d.delivery_id = due.delivery_id
         RETURNING {COLUMNS}"
    );
    let rows = client.query(&sql, &[&lease_us, &limit]).await.ctx(CONTEXT)?;
    let mut claimed = rows.iter().map(delivery_from_row).collect::<Result<Vec<_>, _>>()?;
    // RETURNING keeps no order: oldest first, as documented.
    claimed.sort_by(|a, b| (a.created_at, &a.delivery_id).cmp(&(b.created_at, &b.delivery_id)));
    Ok(claimed)
}

pub(super) async fn record(
    client: &deadpool_postgres::Client,
    delivery_id: &str,
    attempt: &WebhookAttempt,
) -> Result<(), JobStoreError> {
    const CONTEXT: &str = "record_webhook_attempt";
    let (state, next, finished) = match attempt.next {
        AttemptNext::Delivered => (WebhookState::Delivered, None, true),
        AttemptNext::GiveUp => (WebhookState::Failed, None, true),
        AttemptNext::RetryAt(at) => (WebhookState::Pending, Some(at), false),
    };
    let status = attempt.status.map(i32::from);
    let stmt = client
        .prepare_cached(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, state = $2,
                 event_type = COALESCE(event_type, $3), payload = COALESCE(payload, $4),
                 first_attempt_at = COALESCE(first_attempt_at, now()), last_attempt_at = now(),
                 next_attempt_at = $5, lease_until = NULL, last_status = $6, last_error = $7,
                 finished_at = CASE WHEN $8 THEN now() END
             WHERE delivery_id = $1",
        )
        .await
        .ctx(CONTEXT)?;
    let args: [&(dyn tokio_postgres::types::ToSql + Sync); 8] =
        [&delivery_id, &state.as_str(), &attempt.event_type, &attempt.payload, &next, &status, &attempt.error, &finished];
    client.execute(&stmt, &args).await.ctx(CONTEXT)?;
    Ok(())
}

pub(super) async fn of_job(client: &deadpool_postgres::Client, job_id: &str) -> Result<Vec<WebhookDelivery>, JobStoreError> {
    const CONTEXT: &str = "job_webhooks";
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM webhook_deliveries d WHERE d.job_id = $1 ORDER BY d.created_at, d.delivery_id"
        ))
        .await
        .ctx(CONTEXT)?;
    client.query(&stmt, &[&job_id]).await.ctx(CONTEXT)?.iter().map(delivery_from_row).collect()
}

fn delivery_from_row(row: &Row) -> Result<WebhookDelivery, JobStoreError> {
    const CONTEXT: &str = "reading a webhook delivery";
    let state: &str = row.try_get(3).ctx(CONTEXT)?;
    let attempts: i32 = row.try_get(6).ctx(CONTEXT)?;
    let status: Option<i32> = row.try_get(11).ctx(CONTEXT)?;
    let at = |i: usize| -> Result<Option<DateTime<Utc>>, JobStoreError> { row.try_get(i).ctx(CONTEXT) };
    Ok(WebhookDelivery {
        delivery_id: row.try_get(0).ctx(CONTEXT)?,
        job_id: row.try_get(1).ctx(CONTEXT)?,
        url: row.try_get(2).ctx(CONTEXT)?,
        state: WebhookState::parse(state).ok_or_else(|| JobStoreError::Other(format!("unknown webhook state {state:?}")))?,
        event_type: row.try_get(4).ctx(CONTEXT)?,
        payload: row.try_get(5).ctx(CONTEXT)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        created_at: row.try_get(7).ctx(CONTEXT)?,
        first_attempt_at: at(8)?,
        last_attempt_at: at(9)?,
        next_attempt_at: at(10)?,
        last_status: status.and_then(|s| u16::try_from(s).ok()),
        last_error: row.try_get(12).ctx(CONTEXT)?,
        finished_at: at(13)?,
    })
}
