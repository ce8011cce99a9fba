//! The SQLite store's webhook deliveries (see `jobs/webhooks.rs`). A claim is one
//! `IMMEDIATE` transaction, so two processes on one file never take the same delivery.

use std::time::Duration;

use rusqlite::{params, Connection, Row};

use super::writes::begin;
use super::{opt_time, time, SqlResultExt};
use crate::jobs::{AttemptNext, JobStoreError, WebhookAttempt, WebhookDelivery, WebhookState};

const COLUMNS: &str = "delivery_id, job_id, url, state, event_type, payload, attempts, created_at, \
     first_attempt_at, last_attempt_at, next_attempt_at, last_status, last_error, finished_at";

pub(super) fn add(conn: &mut Connection, now: i64, job_id: &str, urls: &[String], ids: &[String]) -> Result<(), JobStoreError> {
    const CONTEXT: &str = "add_webhooks";
    let tx = begin(conn, CONTEXT)?;
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO webhook_deliveries (delivery_id, job_id, url, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (job_id, url) DO NOTHING",
            )
            .ctx(CONTEXT)?;
        for (url, id) in urls.iter().zip(ids) {
            insert.execute(params![id, job_id, url, now]).ctx(CONTEXT)?;
        }
    }
    tx.commit().ctx(CONTEXT)
}

pub(super) fn claim(conn: &mut Connection, now: i64, lease: Duration, limit: usize) -> Result<Vec<WebhookDelivery>, JobStoreError> {
    const CONTEXT: &str = "claim_webhooks";
    let lease_until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let tx = begin(conn, CONTEXT)?;
    let due: Vec<String> = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT d.delivery_id FROM webhook_deliveries d JOIN jobs j ON j.job_id = d.job_id
                 WHERE ((d.state = 'waiting' AND j.status NOT IN ('queued', 'running'))
                        OR (d.state = 'pending' AND d.next_attempt_at <= ?1))
                   AND (d.lease_until IS NULL OR d.lease_until <= ?1)
                 ORDER BY d.created_at, d.delivery_id LIMIT ?2",
            )
            .ctx(CONTEXT)?;
        let rows = stmt.query_map(params![now, limit], |row| row.get(0)).ctx(CONTEXT)?;
        rows.collect::<Result<_, _>>().ctx(CONTEXT)?
    };
    let mut claimed = Vec::with_capacity(due.len());
    {
        let mut take = tx
            .prepare_cached(&format!(
                "UPDATE webhook_deliveries SET state = 'pending', lease_until = ?2,
                     next_attempt_at = COALESCE(next_attempt_at, ?3)
                 WHERE delivery_id = ?1 RETURNING {COLUMNS}"
            ))
            .ctx(CONTEXT)?;
        for id in &due {
            claimed.push(take.query_row(params![id, lease_until, now], delivery_from_row).ctx(CONTEXT)??);
        }
    }
    tx.commit().ctx(CONTEXT)?;
    Ok(claimed)
}

pub(super) fn record(conn: &mut Connection, now: i64, delivery_id: &str, attempt: &WebhookAttempt) -> Result<(), JobStoreError> {
    const CONTEXT: &str = "record_webhook_attempt";
    let (state, next, finished) = match attempt.next {
        AttemptNext::Delivered => (WebhookState::Delivered, None, Some(now)),
        AttemptNext::GiveUp => (WebhookState::Failed, None, Some(now)),
        AttemptNext::RetryAt(at) => (WebhookState::Pending, Some(at.timestamp_micros()), None),
    };
    conn.prepare_cached(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, state = ?2,
             event_type = COALESCE(event_type, ?3), payload = COALESCE(payload, ?4),
             first_attempt_at = COALESCE(first_attempt_at, ?5), last_attempt_at = ?5,
             next_attempt_at = ?6, lease_until = NULL, last_status = ?7, last_error = ?8, finished_at = ?9
         WHERE delivery_id = ?1",
    )
    .ctx(CONTEXT)?
    .execute(params![
        delivery_id,
        state.as_str(),
        attempt.event_type,
        attempt.payload,
        now,
        next,
        attempt.status,
        attempt.error,
        finished
    ])
    .ctx(CONTEXT)?;
    Ok(())
}

pub(super) fn of_job(conn: &Connection, job_id: &str) -> Result<Vec<WebhookDelivery>, JobStoreError> {
    const CONTEXT: &str = "job_webhooks";
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM webhook_deliveries WHERE job_id = ?1 ORDER BY created_at, delivery_id"
        ))
        .ctx(CONTEXT)?;
    let rows = stmt.query_map(params![job_id], delivery_from_row).ctx(CONTEXT)?;
    rows.map(|r| r.ctx(CONTEXT)?).collect()
}

/// A row in `COLUMNS` order; the outer error is the driver's, the inner one a bad value.
fn delivery_from_row(row: &Row) -> rusqlite::Result<Result<WebhookDelivery, JobStoreError>> {
    let state: String = row.get(3)?;
    let attempts: i64 = row.get(6)?;
    let status: Option<i64> = row.get(11)?;
    let (created, first, last, next, finished): (i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>) =
        (row.get(7)?, row.get(8)?, row.get(9)?, row.get(10)?, row.get(13)?);
    let (delivery_id, job_id, url, event_type, payload, last_error) =
        (row.get(0)?, row.get(1)?, row.get(2)?, row.get(4)?, row.get(5)?, row.get(12)?);
    Ok((|| {
        Ok(WebhookDelivery {
            delivery_id,
            job_id,
            url,
            state: WebhookState::parse(&state)
                .ok_or_else(|| JobStoreError::Other(format!("unknown webhook state {state:?}")))?,
            event_type,
            payload,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            created_at: time(created)?,
            first_attempt_at: opt_time(first)?,
            last_attempt_at: opt_time(last)?,
            next_attempt_at: opt_time(next)?,
            last_status: status.and_then(|s| u16::try_from(s).ok()),
            last_error,
            finished_at: opt_time(finished)?,
        })
    })())
}
