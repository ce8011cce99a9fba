//! Duplicate analyses and archives (see `jobs/curation.rs`) for SQLite.

use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::writes::begin;
use super::{opt_time, time, SqlResultExt};
use crate::jobs::curation::{AnalysisOutcome, AnalysisSpec, AnalysisState, ArchiveRecord, DuplicateAnalysis};
use crate::jobs::JobStoreError;

const ANALYSIS_COLUMNS: &str = "task_id, collection, threshold, state, scanned, total, report, error, created_at, finished_at";

pub(super) fn create(conn: &Connection, now: i64, task_id: &str, spec: &AnalysisSpec, owner: &str) -> Result<(), JobStoreError> {
    conn.execute(
        "INSERT INTO duplicate_analyses (task_id, collection, threshold, state, owner, heartbeat_at, created_at)
         VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?5)",
        params![task_id, spec.collection, f64::from(spec.threshold), owner, now],
    )
    .ctx("create_analysis")?;
    Ok(())
}

pub(super) fn claim_stale(
    conn: &mut Connection,
    now: i64,
    owner: &str,
    lease: Duration,
) -> Result<Option<DuplicateAnalysis>, JobStoreError> {
    const CONTEXT: &str = "claim_stale_analysis";
    let stale_before = now.saturating_sub(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
    let tx = begin(conn, CONTEXT)?;
    let found = tx
        .query_row(
            &format!(
                "SELECT {ANALYSIS_COLUMNS} FROM duplicate_analyses
                 WHERE state = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < ?1)
                 ORDER BY created_at, task_id LIMIT 1"
            ),
            params![stale_before],
            |row| Ok(analysis_from_row(row)),
        )
        .optional()
        .ctx(CONTEXT)?
        .transpose()?;
    if let Some(analysis) = &found {
        tx.execute(
            "UPDATE duplicate_analyses SET owner = ?2, heartbeat_at = ?3, scanned = 0 WHERE task_id = ?1",
            params![analysis.task_id, owner, now],
        )
        .ctx(CONTEXT)?;
    }
    tx.commit().ctx(CONTEXT)?;
    Ok(found)
}

pub(super) fn progress(conn: &Connection, now: i64, task_id: &str, owner: &str, scanned: u64, total: u64) -> Result<bool, JobStoreError> {
    let changed = conn
        .execute(
            "UPDATE duplicate_analyses SET scanned = ?3, total = ?4, heartbeat_at = ?5
             WHERE task_id = ?1 AND owner = ?2 AND state = 'running'",
            params![task_id, owner, to_i64(scanned), to_i64(total), now],
        )
        .ctx("analysis_progress")?;
    Ok(changed == 1)
}

pub(super) fn finish(conn: &Connection, now: i64, task_id: &str, owner: &str, outcome: &AnalysisOutcome) -> Result<bool, JobStoreError> {
    const CONTEXT: &str = "finish_analysis";
    let (state, report, error) = match outcome {
        AnalysisOutcome::Completed(report) => (AnalysisState::Completed, Some(report.to_string()), None),
        AnalysisOutcome::Failed(error) => (AnalysisState::Failed, None, Some(error.as_str())),
    };
    let changed = conn
        .execute(
            "UPDATE duplicate_analyses SET state = ?3, report = ?4, error = ?5, finished_at = ?6, heartbeat_at = NULL
             WHERE task_id = ?1 AND owner = ?2 AND state = 'running'",
            params![task_id, owner, state.as_str(), report, error, now],
        )
        .ctx(CONTEXT)?;
    Ok(changed == 1)
}

pub(super) fn get(conn: &Connection, task_id: &str) -> Result<Option<DuplicateAnalysis>, JobStoreError> {
    conn.query_row(
        &format!("SELECT {ANALYSIS_COLUMNS} FROM duplicate_analyses WHERE task_id = ?1"),
        params![task_id],
        |row| Ok(analysis_from_row(row)),
    )
    .optional()
    .ctx("analysis")?
    .transpose()
}

fn analysis_from_row(row: &Row<'_>) -> Result<DuplicateAnalysis, JobStoreError> {
    const CONTEXT: &str = "analysis";
    let state: String = row.get(3).ctx(CONTEXT)?;
    let report: Option<String> = row.get(6).ctx(CONTEXT)?;
    let threshold: f64 = row.get(2).ctx(CONTEXT)?;
    Ok(DuplicateAnalysis {
        task_id: row.get(0).ctx(CONTEXT)?,
        spec: AnalysisSpec { collection: row.get(1).ctx(CONTEXT)?, threshold: threshold as f32 },
        state: AnalysisState::parse(&state).ok_or_else(|| JobStoreError::Other(format!("{CONTEXT}: unknown state {state}")))?,
        scanned: from_i64(row.get(4).ctx(CONTEXT)?),
        total: from_i64(row.get(5).ctx(CONTEXT)?),
        report: report.map(|r| json(&r)).transpose()?,
        error: row.get(7).ctx(CONTEXT)?,
        created_at: time(row.get(8).ctx(CONTEXT)?)?,
        finished_at: opt_time(row.get(9).ctx(CONTEXT)?)?,
    })
}

pub(super) fn save_archive(conn: &Connection, record: &ArchiveRecord) -> Result<(), JobStoreError> {
    conn.execute(
        "INSERT INTO archives (archive_id, kind, collection, manifest, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (archive_id) DO UPDATE SET manifest = excluded.manifest",
        params![record.archive_id, record.kind, record.collection, record.manifest.to_string(), record.created_at.timestamp_micros()],
    )
    .ctx("save_archive")?;
    Ok(())
}

pub(super) fn archive(conn: &Connection, archive_id: &str) -> Result<Option<ArchiveRecord>, JobStoreError> {
    const CONTEXT: &str = "archive";
    conn.query_row(
        "SELECT archive_id, kind, collection, manifest, created_at, restored_at FROM archives WHERE archive_id = ?1",
        params![archive_id],
        |row| {
            Ok((|| {
                let manifest: String = row.get(3).ctx(CONTEXT)?;
                Ok(ArchiveRecord {
                    archive_id: row.get(0).ctx(CONTEXT)?,
                    kind: row.get(1).ctx(CONTEXT)?,
                    collection: row.get(2).ctx(CONTEXT)?,
                    manifest: json(&manifest)?,
                    created_at: time(row.get(4).ctx(CONTEXT)?)?,
                    restored_at: opt_time(row.get(5).ctx(CONTEXT)?)?,
                })
            })())
        },
    )
    .optional()
    .ctx(CONTEXT)?
    .transpose()
}

pub(super) fn mark_restored(conn: &Connection, now: i64, archive_id: &str) -> Result<bool, JobStoreError> {
    let changed = conn
        .execute(
            "UPDATE archives SET restored_at = ?2 WHERE archive_id = ?1 AND restored_at IS NULL",
            params![archive_id, now],
        )
        .ctx("mark_restored")?;
    Ok(changed == 1)
}

fn json(text: &str) -> Result<serde_json::Value, JobStoreError> {
    serde_json::from_str(text).map_err(|e| JobStoreError::Other(format!("a stored JSON document does not parse: {e}")))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn from_i64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
