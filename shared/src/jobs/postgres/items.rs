//! Items' outcomes for PostgreSQL: keyset pages, counts by failure kind, retry
//! candidates. All read `job_items_job_state_idx` (migration 0003) or the primary key.

use std::collections::BTreeMap;

use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

use super::PgResultExt;
use crate::jobs::batch::stamp;
use crate::jobs::{ItemPage, ItemRecord, ItemState, JobStoreError, NewItem, RetryCandidates};

const ITEM_COLUMNS: &str = "point_id, path, state, failure_kind, reason, attempts, finished_at, from_cache";

/// One statement per filter combination, so each gets a plan that uses its index
/// (a generic `$2 IS NULL OR …` plan would not).
fn page_sql(by_state: bool, after: bool) -> String {
    let mut sql = format!("SELECT {ITEM_COLUMNS} FROM job_items WHERE job_id = $1");
    let mut n = 1;
    if by_state {
        n += 1;
        sql.push_str(&format!(" AND state = ${n}"));
    }
    if after {
        n += 1;
        sql.push_str(&format!(" AND point_id > ${n}"));
    }
    sql.push_str(&format!(" ORDER BY point_id LIMIT ${}", n + 1));
    sql
}

pub(super) async fn page(
    client: &deadpool_postgres::Client,
    job_id: &str,
    state: Option<ItemState>,
    after: Option<Uuid>,
    limit: usize,
) -> Result<ItemPage, JobStoreError> {
    const CONTEXT: &str = "job_items";
    let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
    let state = state.map(ItemState::as_str);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&job_id];
    if let Some(state) = &state {
        params.push(state);
    }
    if let Some(after) = &after {
        params.push(after);
    }
    params.push(&fetch);
    let stmt = client.prepare_cached(&page_sql(state.is_some(), after.is_some())).await.ctx(CONTEXT)?;
    let rows = client.query(&stmt, &params).await.ctx(CONTEXT)?;
    let items = rows.iter().map(item_from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(ItemPage::from_overfetch(items, limit))
}

pub(super) async fn failures_by_reason(
    client: &deadpool_postgres::Client,
    job_id: &str,
) -> Result<BTreeMap<String, u64>, JobStoreError> {
    const CONTEXT: &str = "failures_by_reason";
    let stmt = client
        .prepare_cached(
            "SELECT coalesce(failure_kind, 'unknown'), count(*) FROM job_items
             WHERE job_id = $1 AND state = 'failed' GROUP BY 1",
        )
        .await
        .ctx(CONTEXT)?;
    let rows = client.query(&stmt, &[&job_id]).await.ctx(CONTEXT)?;
    let mut counts = BTreeMap::new();
    for row in &rows {
        let n: i64 = row.try_get(1).ctx(CONTEXT)?;
        counts.insert(row.try_get(0).ctx(CONTEXT)?, n.max(0).unsigned_abs());
    }
    Ok(counts)
}

pub(super) async fn retry_candidates(
    client: &deadpool_postgres::Client,
    job_id: &str,
) -> Result<RetryCandidates, JobStoreError> {
    const CONTEXT: &str = "retry_candidates";
    // point_outcomes holds each image's latest attempt, whichever job made it. Pending
    // items of a finished job are those a failed job never got done (its tasks could
    // not be queued): they need queueing as much as the failed ones.
    let stmt = client
        .prepare_cached(
            "SELECT i.point_id, i.path, i.size, i.mtime_ns, coalesce(o.state = 'indexed', false)
             FROM job_items i LEFT JOIN point_outcomes o ON o.point_id = i.point_id
             WHERE i.job_id = $1 AND i.state IN ('failed', 'pending')
             ORDER BY i.point_id",
        )
        .await
        .ctx(CONTEXT)?;
    let rows = client.query(&stmt, &[&job_id]).await.ctx(CONTEXT)?;
    let mut out = RetryCandidates::default();
    for row in &rows {
        if row.try_get::<_, bool>(4).ctx(CONTEXT)? {
            out.indexed_since += 1;
            continue;
        }
        out.items.push(NewItem {
            point_id: row.try_get(0).ctx(CONTEXT)?,
            path: row.try_get(1).ctx(CONTEXT)?,
            stamp: stamp(row.try_get(2).ctx(CONTEXT)?, row.try_get(3).ctx(CONTEXT)?)?,
        });
    }
    Ok(out)
}

fn item_from_row(row: &Row) -> Result<ItemRecord, JobStoreError> {
    const CONTEXT: &str = "reading an item";
    let state: &str = row.try_get("state").ctx(CONTEXT)?;
    Ok(ItemRecord {
        point_id: row.try_get("point_id").ctx(CONTEXT)?,
        path: row.try_get("path").ctx(CONTEXT)?,
        state: ItemState::parse(state)
            .ok_or_else(|| JobStoreError::Other(format!("unknown item state {state:?} in the job store")))?,
        failure_kind: row.try_get("failure_kind").ctx(CONTEXT)?,
        reason: row.try_get("reason").ctx(CONTEXT)?,
        attempts: u32::try_from(row.try_get::<_, i32>("attempts").ctx(CONTEXT)?).unwrap_or(0),
        finished_at: row.try_get("finished_at").ctx(CONTEXT)?,
        from_cache: row.try_get("from_cache").ctx(CONTEXT)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_filter_numbers_its_parameters() {
        assert!(page_sql(false, false).ends_with("WHERE job_id = $1 ORDER BY point_id LIMIT $2"));
        assert!(page_sql(true, true).ends_with("state = $2 AND point_id > $3 ORDER BY point_id LIMIT $4"));
        assert!(page_sql(false, true).ends_with("point_id > $2 ORDER BY point_id LIMIT $3"));
    }
}
