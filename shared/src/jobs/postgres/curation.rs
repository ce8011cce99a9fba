//! Duplicate analyses and archives (see `jobs/curation.rs`) for PostgreSQL. A claim
//! picks a stale analysis `FOR UPDATE SKIP LOCKED` and leases it in the same statement,
//! so two API processes never take the same one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::PgResultExt;
use crate::jobs::curation::{AnalysisOutcome, AnalysisSpec, AnalysisState, ArchiveRecord, DuplicateAnalysis};
use crate::jobs::JobStoreError;

const ANALYSIS_COLUMNS: &str = "task_id, collection, threshold, state, scanned, total, report, error, created_at, finished_at";

pub(super) async fn create(
    client: &deadpool_postgres::Client,
    task_id: &str,
    spec: &AnalysisSpec,
    owner: &str,
) -> Result<(), JobStoreError> {
    client
        .execute(
            "INSERT INTO duplicate_analyses (task_id, collection, threshold, state, owner, heartbeat_at)
             VALUES ($1, $2, $3, 'running', $4, now())",
            &[&task_id, &spec.collection, &spec.threshold, &owner],
        )
        .await
        .ctx("create_analysis")?;
    Ok(())
}

pub(super) async fn claim_stale(
    client: &deadpool_postgres::Client,
    owner: &str,
    lease: Duration,
) -> Result<Option<DuplicateAnalysis>, JobStoreError> {
    let lease_us = i64::try_from(lease.as_micros()).unwrap_or(i64::MAX);
    let sql = format!(
        "WITH picked AS (
             SELECT task_id FROM duplicate_analyses
             WHERE state = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < now() - $1::int8 * interval '1 microsecond')
             ORDER BY created_at, task_id LIMIT 1
             FOR UPDATE SKIP LOCKED
         )
         UPDATE duplicate_analyses a SET owner = $2, heartbeat_at = now(), scanned = 0
         FROM picked WHERE a.task_id = picked.task_id
         RETURNING {}",
        prefixed("a.")
    );
    let row = client.query_opt(&sql, &[&lease_us, &owner]).await.ctx("claim_stale_analysis")?;
    row.as_ref().map(analysis_from_row).transpose()
}

pub(super) async fn progress(
    client: &deadpool_postgres::Client,
    task_id: &str,
    owner: &str,
    scanned: u64,
    total: u64,
) -> Result<bool, JobStoreError> {
    let changed = client
        .execute(
            "UPDATE duplicate_analyses SET scanned = $3, total = $4, heartbeat_at = now()
             WHERE task_id = $1 AND owner = $2 AND state = 'running'",
            &[&task_id, &owner, &to_i64(scanned), &to_i64(total)],
        )
        .await
        .ctx("analysis_progress")?;
    Ok(changed == 1)
}

pub(super) async fn finish(
    client: &deadpool_postgres::Client,
    task_id: &str,
    owner: &str,
    outcome: &AnalysisOutcome,
) -> Result<bool, JobStoreError> {
    let (state, report, error) = match outcome {
        AnalysisOutcome::Completed(report) => (AnalysisState::Completed, Some(report), None),
        AnalysisOutcome::Failed(error) => (AnalysisState::Failed, None, Some(error.as_str())),
    };
    let changed = client
        .execute(
            "UPDATE duplicate_analyses SET state = $3, report = $4, error = $5, finished_at = now(), heartbeat_at = NULL
             WHERE task_id = $1 AND owner = $2 AND state = 'running'",
            &[&task_id, &owner, &state.as_str(), &report, &error],
        )
        .await
        .ctx("finish_analysis")?;
    Ok(changed == 1)
}

pub(super) async fn get(client: &deadpool_postgres::Client, task_id: &str) -> Result<Option<DuplicateAnalysis>, JobStoreError> {
    let sql = format!("SELECT {ANALYSIS_COLUMNS} FROM duplicate_analyses WHERE task_id = $1");
    let row = client.query_opt(&sql, &[&task_id]).await.ctx("analysis")?;
    row.as_ref().map(analysis_from_row).transpose()
}

fn prefixed(prefix: &str) -> String {
    ANALYSIS_COLUMNS.split(", ").map(|c| format!("{prefix}{c}")).collect::<Vec<_>>().join(", ")
}

fn analysis_from_row(row: &Row) -> Result<DuplicateAnalysis, JobStoreError> {
    const CONTEXT: &str = "analysis";
    let state: &str = row.try_get(3).ctx(CONTEXT)?;
    Ok(DuplicateAnalysis {
        task_id: row.try_get(0).ctx(CONTEXT)?,
        spec: AnalysisSpec { collection: row.try_get(1).ctx(CONTEXT)?, threshold: row.try_get(2).ctx(CONTEXT)? },
        state: AnalysisState::parse(state).ok_or_else(|| JobStoreError::Other(format!("{CONTEXT}: unknown state {state}")))?,
        scanned: from_i64(row.try_get(4).ctx(CONTEXT)?),
        total: from_i64(row.try_get(5).ctx(CONTEXT)?),
        report: row.try_get(6).ctx(CONTEXT)?,
        error: row.try_get(7).ctx(CONTEXT)?,
        created_at: row.try_get(8).ctx(CONTEXT)?,
        finished_at: row.try_get(9).ctx(CONTEXT)?,
    })
}

pub(super) async fn save_archive(client: &deadpool_postgres::Client, record: &ArchiveRecord) -> Result<(), JobStoreError> {
    client
        .execute(
            "INSERT INTO archives (archive_id, kind, collection, manifest, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (archive_id) DO UPDATE SET manifest = excluded.manifest",
            &[&record.archive_id, &record.kind, &record.collection, &record.manifest, &record.created_at],
        )
        .await
        .ctx("save_archive")?;
    Ok(())
}

pub(super) async fn archive(client: &deadpool_postgres::Client, archive_id: &str) -> Result<Option<ArchiveRecord>, JobStoreError> {
    const CONTEXT: &str = "archive";
    let row = client
        .query_opt(
            "SELECT archive_id, kind, collection, manifest, created_at, restored_at FROM archives WHERE archive_id = $1",
            &[&archive_id],
        )
        .await
        .ctx(CONTEXT)?;
    let Some(row) = row else { return Ok(None) };
    let restored_at: Option<DateTime<Utc>> = row.try_get(5).ctx(CONTEXT)?;
    Ok(Some(ArchiveRecord {
        archive_id: row.try_get(0).ctx(CONTEXT)?,
        kind: row.try_get(1).ctx(CONTEXT)?,
        collection: row.try_get(2).ctx(CONTEXT)?,
        manifest: row.try_get(3).ctx(CONTEXT)?,
        created_at: row.try_get(4).ctx(CONTEXT)?,
        restored_at,
    }))
}

pub(super) async fn mark_restored(client: &deadpool_postgres::Client, archive_id: &str) -> Result<bool, JobStoreError> {
    let changed = client
        .execute("UPDATE archives SET restored_at = now() WHERE archive_id = $1 AND restored_at IS NULL", &[&archive_id])
        .await
        .ctx("mark_restored")?;
    Ok(changed == 1)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn from_i64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
