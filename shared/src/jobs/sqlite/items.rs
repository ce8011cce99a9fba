//! Items' outcomes for SQLite: keyset pages, counts by failure kind, retry
//! candidates, as `postgres/items.rs` does (index from migration 0002).

use std::collections::BTreeMap;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, Row};
use uuid::Uuid;

use super::{count, opt_time, point_bytes, point_id, SqlResultExt};
use crate::jobs::batch::stamp;
use crate::jobs::{ItemPage, ItemRecord, ItemState, JobStoreError, NewItem, RetryCandidates};

fn page_sql(by_state: bool, after: bool) -> String {
    let mut sql =
        String::from("SELECT point_id, path, state, failure_kind, reason, attempts, finished_at, from_cache FROM job_items WHERE job_id = ?");
    if by_state {
        sql.push_str(" AND state = ?");
    }
    if after {
        sql.push_str(" AND point_id > ?");
    }
    sql.push_str(" ORDER BY point_id LIMIT ?");
    sql
}

pub(super) fn page(
    conn: &Connection,
    job_id: &str,
    state: Option<ItemState>,
    after: Option<Uuid>,
    limit: usize,
) -> Result<ItemPage, JobStoreError> {
    const CONTEXT: &str = "job_items";
    let mut values = vec![Value::Text(job_id.to_owned())];
    if let Some(state) = state {
        values.push(Value::Text(state.as_str().to_owned()));
    }
    if let Some(after) = &after {
        values.push(Value::Blob(point_bytes(after).to_vec()));
    }
    values.push(Value::Integer(i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)));
    let mut stmt = conn.prepare_cached(&page_sql(state.is_some(), after.is_some())).ctx(CONTEXT)?;
    let rows = stmt.query_map(params_from_iter(values), |row| Ok(item_from_row(row))).ctx(CONTEXT)?;
    let items = rows.collect::<Result<Vec<_>, _>>().ctx(CONTEXT)?.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(ItemPage::from_overfetch(items, limit))
}

pub(super) fn failures_by_reason(conn: &Connection, job_id: &str) -> Result<BTreeMap<String, u64>, JobStoreError> {
    const CONTEXT: &str = "failures_by_reason";
    let mut stmt = conn
        .prepare_cached(
            "SELECT coalesce(failure_kind, 'unknown'), count(*) FROM job_items
             WHERE job_id = ?1 AND state = 'failed' GROUP BY 1",
        )
        .ctx(CONTEXT)?;
    let rows = stmt.query_map(params![job_id], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))).ctx(CONTEXT)?;
    let mut counts = BTreeMap::new();
    for row in rows {
        let (kind, n) = row.ctx(CONTEXT)?;
        counts.insert(kind, count(n, "failure count")?);
    }
    Ok(counts)
}

pub(super) fn retry_candidates(conn: &Connection, job_id: &str) -> Result<RetryCandidates, JobStoreError> {
    const CONTEXT: &str = "retry_candidates";
    // point_outcomes holds each image's latest attempt, whichever job made it. Pending
    // items of a finished job are those a failed job never got done (its tasks could
    // not be queued): they need queueing as much as the failed ones.
    let mut stmt = conn
        .prepare_cached(
            "SELECT i.point_id, i.path, i.size, i.mtime_ns, coalesce(o.state = 'indexed', 0)
             FROM job_items i LEFT JOIN point_outcomes o ON o.point_id = i.point_id
             WHERE i.job_id = ?1 AND i.state IN ('failed', 'pending')
             ORDER BY i.point_id",
        )
        .ctx(CONTEXT)?;
    let rows = stmt
        .query_map(params![job_id], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<i64>>(2)?,
                row.get::<_, Option<i64>>(3)?,
                row.get::<_, bool>(4)?,
            ))
        })
        .ctx(CONTEXT)?;
    let mut out = RetryCandidates::default();
    for row in rows {
        let (point, path, size, mtime_ns, indexed_since) = row.ctx(CONTEXT)?;
        if indexed_since {
            out.indexed_since += 1;
        } else {
            out.items.push(NewItem { point_id: point_id(&point)?, path, stamp: stamp(size, mtime_ns)? });
        }
    }
    Ok(out)
}

fn item_from_row(row: &Row<'_>) -> Result<ItemRecord, JobStoreError> {
    const CONTEXT: &str = "reading an item";
    let state: String = row.get("state").ctx(CONTEXT)?;
    Ok(ItemRecord {
        point_id: point_id(&row.get::<_, Vec<u8>>("point_id").ctx(CONTEXT)?)?,
        path: row.get("path").ctx(CONTEXT)?,
        state: ItemState::parse(&state)
            .ok_or_else(|| JobStoreError::Other(format!("unknown item state {state:?} in the job store")))?,
        failure_kind: row.get("failure_kind").ctx(CONTEXT)?,
        reason: row.get("reason").ctx(CONTEXT)?,
        attempts: u32::try_from(row.get::<_, i64>("attempts").ctx(CONTEXT)?).unwrap_or(0),
        finished_at: opt_time(row.get("finished_at").ctx(CONTEXT)?)?,
        from_cache: row.get("from_cache").ctx(CONTEXT)?,
    })
}
