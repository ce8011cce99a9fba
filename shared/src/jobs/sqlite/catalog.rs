//! The collection catalog (see `jobs/catalog.rs`) for SQLite. Each change is one
//! `IMMEDIATE` transaction, so its checks and its write see the same state.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::writes::begin;
use super::{count, micros, time, SqlResultExt};
use crate::collections::{CollectionRecord, Distance, NextGeneration};
use crate::jobs::catalog::{AddCollection, BeginSwitch, ForgetPrevious, RemoveCollection, SwitchCompleted, SELECTED_KEY};
use crate::jobs::JobStoreError;

const COLUMNS: &str = "name, physical, previous, model, dim, distance, scoped_ids, created_at";
const NEXT_COLUMNS: &str = "next_physical, next_model, next_dim, next_job, next_started_at";

pub(super) fn ensure_initial(conn: &mut Connection, record: &CollectionRecord) -> Result<CollectionRecord, JobStoreError> {
    const CONTEXT: &str = "ensure_initial_collection";
    let tx = begin(conn, CONTEXT)?;
    insert(&tx, record, CONTEXT)?;
    tx.execute(
        "INSERT INTO server_settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
        params![SELECTED_KEY, record.name],
    )
    .ctx(CONTEXT)?;
    let stored = get(&tx, &record.name)?
        .ok_or_else(|| JobStoreError::Other(format!("{CONTEXT}: collection {} vanished", record.name)))?;
    tx.commit().ctx(CONTEXT)?;
    Ok(stored)
}

pub(super) fn add(conn: &mut Connection, record: &CollectionRecord, max: usize) -> Result<AddCollection, JobStoreError> {
    const CONTEXT: &str = "add_collection";
    let tx = begin(conn, CONTEXT)?;
    if let Some(existing) = get(&tx, &record.name)? {
        return Ok(AddCollection::Exists(Box::new(existing)));
    }
    let n: i64 = tx.query_row("SELECT count(*) FROM collections", [], |r| r.get(0)).ctx(CONTEXT)?;
    if count(n, "collection count")? >= max as u64 {
        return Ok(AddCollection::Full);
    }
    insert(&tx, record, CONTEXT)?;
    tx.commit().ctx(CONTEXT)?;
    Ok(AddCollection::Added)
}

fn insert(conn: &Connection, r: &CollectionRecord, context: &str) -> Result<(), JobStoreError> {
    let dim = i64::try_from(r.dim).map_err(|_| JobStoreError::Other(format!("{context}: dim out of range")))?;
    conn.execute(
        &format!("INSERT INTO collections ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (name) DO NOTHING"),
        params![r.name, r.physical, r.previous, r.model, dim, r.distance.as_str(), r.scoped_ids, micros(r.created_at)],
    )
    .ctx(context)?;
    Ok(())
}

pub(super) fn get(conn: &Connection, name: &str) -> Result<Option<CollectionRecord>, JobStoreError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS}, {NEXT_COLUMNS} FROM collections WHERE name = ?1")).ctx("collection")?;
    stmt.query_row(params![name], |row| Ok(from_row(row))).optional().ctx("collection")?.transpose()
}

pub(super) fn all(conn: &Connection) -> Result<Vec<CollectionRecord>, JobStoreError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS}, {NEXT_COLUMNS} FROM collections ORDER BY name")).ctx("collections")?;
    let rows = stmt.query_map([], |row| Ok(from_row(row))).ctx("collections")?;
    rows.collect::<Result<Vec<_>, _>>().ctx("collections")?.into_iter().collect()
}

pub(super) fn remove(conn: &mut Connection, name: &str) -> Result<RemoveCollection, JobStoreError> {
    const CONTEXT: &str = "remove_collection";
    let tx = begin(conn, CONTEXT)?;
    let Some(record) = get(&tx, name)? else {
        return Ok(RemoveCollection::Missing);
    };
    if selected(&tx)?.as_deref() == Some(name) {
        return Ok(RemoveCollection::Selected);
    }
    let active: i64 = tx
        .query_row(
            "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running') AND collection IN (?1, ?2, ?3)",
            params![
                record.physical,
                record.previous.as_deref().unwrap_or(&record.physical),
                record.next.as_ref().map_or(&record.physical, |n| &n.physical)
            ],
            |r| r.get(0),
        )
        .ctx(CONTEXT)?;
    if active > 0 {
        return Ok(RemoveCollection::Busy { active_jobs: count(active, "active jobs")? });
    }
    tx.execute("DELETE FROM collections WHERE name = ?1", params![name]).ctx(CONTEXT)?;
    tx.commit().ctx(CONTEXT)?;
    Ok(RemoveCollection::Removed(Box::new(record)))
}

pub(super) fn select(conn: &mut Connection, name: &str) -> Result<bool, JobStoreError> {
    const CONTEXT: &str = "select_collection";
    let tx = begin(conn, CONTEXT)?;
    if get(&tx, name)?.is_none() {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO server_settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![SELECTED_KEY, name],
    )
    .ctx(CONTEXT)?;
    tx.commit().ctx(CONTEXT)?;
    Ok(true)
}

pub(super) fn selected(conn: &Connection) -> Result<Option<String>, JobStoreError> {
    conn.prepare_cached("SELECT value FROM server_settings WHERE key = ?1")
        .ctx("selected_collection")?
        .query_row(params![SELECTED_KEY], |r| r.get(0))
        .optional()
        .ctx("selected_collection")
}

pub(super) fn begin_switch(conn: &mut Connection, name: &str, next: &NextGeneration) -> Result<BeginSwitch, JobStoreError> {
    const CONTEXT: &str = "begin_switch";
    let tx = begin(conn, CONTEXT)?;
    let Some(record) = get(&tx, name)? else {
        return Ok(BeginSwitch::Missing);
    };
    if let Some(pending) = record.next {
        return Ok(BeginSwitch::Switching(pending));
    }
    // Jobs of the initial collection from before collections name none.
    let active: i64 = tx
        .query_row(
            "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running') AND (collection = ?1 OR (collection IS NULL AND ?2))",
            params![record.physical, !record.scoped_ids],
            |r| r.get(0),
        )
        .ctx(CONTEXT)?;
    if active > 0 {
        return Ok(BeginSwitch::Busy { active_jobs: count(active, "active jobs")? });
    }
    let dim = i64::try_from(next.dim).map_err(|_| JobStoreError::Other(format!("{CONTEXT}: dim out of range")))?;
    tx.execute(
        "UPDATE collections SET next_physical = ?2, next_model = ?3, next_dim = ?4, next_job = ?5, next_started_at = ?6
         WHERE name = ?1",
        params![name, next.physical, next.model, dim, next.job_id, micros(next.started_at)],
    )
    .ctx(CONTEXT)?;
    let after = get(&tx, name)?.ok_or_else(|| JobStoreError::Other(format!("{CONTEXT}: collection {name} vanished")))?;
    tx.commit().ctx(CONTEXT)?;
    Ok(BeginSwitch::Started(after))
}

/// The record of `name` when its pending switch is the one `job_id` fills.
fn switching(tx: &Connection, name: &str, job_id: &str) -> Result<Option<CollectionRecord>, JobStoreError> {
    Ok(get(tx, name)?.filter(|r| r.next.as_ref().is_some_and(|n| n.job_id == job_id)))
}

pub(super) fn complete_switch(conn: &mut Connection, name: &str, job_id: &str) -> Result<Option<SwitchCompleted>, JobStoreError> {
    const CONTEXT: &str = "complete_switch";
    let tx = begin(conn, CONTEXT)?;
    let Some(before) = switching(&tx, name, job_id)? else {
        return Ok(None);
    };
    // Every right-hand side reads the row as it was.
    tx.execute(
        "UPDATE collections SET previous = physical, physical = next_physical, model = next_model, dim = next_dim,
             next_physical = NULL, next_model = NULL, next_dim = NULL, next_job = NULL, next_started_at = NULL
         WHERE name = ?1",
        params![name],
    )
    .ctx(CONTEXT)?;
    let record = get(&tx, name)?.ok_or_else(|| JobStoreError::Other(format!("{CONTEXT}: collection {name} vanished")))?;
    tx.commit().ctx(CONTEXT)?;
    Ok(Some(SwitchCompleted { record, replaced: before.previous }))
}

pub(super) fn abandon_switch(conn: &mut Connection, name: &str, job_id: &str) -> Result<Option<String>, JobStoreError> {
    const CONTEXT: &str = "abandon_switch";
    let tx = begin(conn, CONTEXT)?;
    let Some(next) = switching(&tx, name, job_id)?.and_then(|r| r.next) else {
        return Ok(None);
    };
    tx.execute(
        "UPDATE collections SET next_physical = NULL, next_model = NULL, next_dim = NULL, next_job = NULL,
             next_started_at = NULL
         WHERE name = ?1",
        params![name],
    )
    .ctx(CONTEXT)?;
    tx.commit().ctx(CONTEXT)?;
    Ok(Some(next.physical))
}

pub(super) fn forget_previous(conn: &mut Connection, name: &str) -> Result<ForgetPrevious, JobStoreError> {
    const CONTEXT: &str = "forget_previous";
    let tx = begin(conn, CONTEXT)?;
    let Some(record) = get(&tx, name)? else {
        return Ok(ForgetPrevious::Missing);
    };
    let Some(previous) = record.previous else {
        return Ok(ForgetPrevious::NoPrevious);
    };
    tx.execute("UPDATE collections SET previous = NULL WHERE name = ?1", params![name]).ctx(CONTEXT)?;
    tx.commit().ctx(CONTEXT)?;
    Ok(ForgetPrevious::Forgotten(previous))
}

fn from_row(row: &Row<'_>) -> Result<CollectionRecord, JobStoreError> {
    const CONTEXT: &str = "reading a collection";
    let distance: String = row.get("distance").ctx(CONTEXT)?;
    let dim: i64 = row.get("dim").ctx(CONTEXT)?;
    Ok(CollectionRecord {
        name: row.get("name").ctx(CONTEXT)?,
        physical: row.get("physical").ctx(CONTEXT)?,
        previous: row.get("previous").ctx(CONTEXT)?,
        model: row.get("model").ctx(CONTEXT)?,
        dim: usize::try_from(dim).map_err(|_| JobStoreError::Other(format!("{CONTEXT}: bad dim {dim}")))?,
        distance: Distance::parse(&distance)
            .ok_or_else(|| JobStoreError::Other(format!("{CONTEXT}: unknown distance {distance:?}")))?,
        scoped_ids: row.get("scoped_ids").ctx(CONTEXT)?,
        created_at: time(row.get("created_at").ctx(CONTEXT)?)?,
        next: next_from_row(row)?,
    })
}

fn next_from_row(row: &Row<'_>) -> Result<Option<NextGeneration>, JobStoreError> {
    const CONTEXT: &str = "reading a collection's next generation";
    let Some(physical) = row.get::<_, Option<String>>("next_physical").ctx(CONTEXT)? else {
        return Ok(None);
    };
    let missing = |column: &str| JobStoreError::Other(format!("{CONTEXT}: {column} is NULL beside next_physical"));
    let dim: i64 = row.get::<_, Option<i64>>("next_dim").ctx(CONTEXT)?.ok_or_else(|| missing("next_dim"))?;
    Ok(Some(NextGeneration {
        physical,
        model: row.get::<_, Option<String>>("next_model").ctx(CONTEXT)?.ok_or_else(|| missing("next_model"))?,
        dim: usize::try_from(dim).map_err(|_| JobStoreError::Other(format!("{CONTEXT}: bad dim {dim}")))?,
        job_id: row.get::<_, Option<String>>("next_job").ctx(CONTEXT)?.ok_or_else(|| missing("next_job"))?,
        started_at: time(
            row.get::<_, Option<i64>>("next_started_at").ctx(CONTEXT)?.ok_or_else(|| missing("next_started_at"))?,
        )?,
    }))
}
