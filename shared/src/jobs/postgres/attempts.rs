//! [`JobStore::count_attempts`](crate::jobs::JobStore::count_attempts) for PostgreSQL.

use std::collections::HashMap;

use uuid::Uuid;

use super::PgResultExt;
use crate::jobs::attempts::{decide, Pending};
use crate::jobs::{AttemptCount, ItemKey, JobStoreError};

/// Locks the pending rows in key order (so two workers never deadlock on each other's
/// items), then raises those chosen: all, or with `$3` only those at 0. Returns every
/// pending row with its attempts before the update.
/// Items of jobs that ended (cancelled, failed) are returned but never raised.
const COUNT: &str = "
    WITH wanted AS (
        SELECT i.job_id, i.point_id, i.attempts, j.status IN ('queued', 'running') AS active
        FROM job_items i
        JOIN unnest($1::text[], $2::uuid[]) AS k(job_id, point_id)
          ON i.job_id = k.job_id AND i.point_id = k.point_id
        JOIN jobs j ON j.job_id = i.job_id
        WHERE i.state = 'pending'
        ORDER BY i.job_id, i.point_id
        FOR UPDATE OF i
    ),
    raised AS (
        UPDATE job_items i SET attempts = i.attempts + 1, started_at = coalesce(i.started_at, now())
        FROM wanted w
        WHERE i.job_id = w.job_id AND i.point_id = w.point_id AND w.active AND (NOT $3 OR w.attempts = 0)
    )
    SELECT job_id, point_id, attempts, active FROM wanted";

pub(super) async fn count(
    client: &deadpool_postgres::Client,
    items: &[ItemKey],
    first_only: bool,
) -> Result<Vec<AttemptCount>, JobStoreError> {
    const CONTEXT: &str = "count_attempts";
    let jobs: Vec<&str> = items.iter().map(|k| k.job_id.as_str()).collect();
    let points: Vec<Uuid> = items.iter().map(|k| k.point_id).collect();
    let stmt = client.prepare_cached(COUNT).await.ctx(CONTEXT)?;
    let rows = client.query(&stmt, &[&jobs, &points, &first_only]).await.ctx(CONTEXT)?;
    let mut before: HashMap<(String, Uuid), Pending> = HashMap::with_capacity(rows.len());
    for row in rows {
        let attempts: i32 = row.try_get(2).ctx(CONTEXT)?;
        let pending = Pending { attempts: u32::try_from(attempts).unwrap_or(0), job_active: row.try_get(3).ctx(CONTEXT)? };
        before.insert((row.try_get(0).ctx(CONTEXT)?, row.try_get(1).ctx(CONTEXT)?), pending);
    }
    // A key listed twice is counted once (one row); both answers say the same.
    Ok(items
        .iter()
        .map(|k| decide(before.get(&(k.job_id.clone(), k.point_id)).copied(), first_only).0)
        .collect())
}
