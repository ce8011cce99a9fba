//! The collection catalog (see `jobs/catalog.rs`) for SQLite. Each change is one
//! `IMMEDIATE` transaction, so its checks and its write see the same state.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::writes::begin;
use super::{count, micros, time, SqlResultExt};
use crate::collections::{CollectionRecord, Distance};
use crate::jobs::catalog::{AddCollection, RemoveCollection, SELECTED_KEY};
use crate::jobs::JobStoreError;

const COLUMNS: &str = "name, physical, previous, model, dim, distance, scoped_ids, created_at";

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
        return Ok(AddCollection::Exists(existing));
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
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM collections WHERE name = ?1")).ctx("collection")?;
    stmt.query_row(params![name], |row| Ok(from_row(row))).optional().ctx("collection")?.transpose()
}

pub(super) fn all(conn: &Connection) -> Result<Vec<CollectionRecord>, JobStoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM collections ORDER BY name")).ctx("collections")?;
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
            "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running') AND collection IN (?1, ?2)",
            params![record.physical, record.previous.as_deref().unwrap_or(&record.physical)],
            |r| r.get(0),
        )
        .ctx(CONTEXT)?;
    if active > 0 {
        return Ok(RemoveCollection::Busy { active_jobs: count(active, "active jobs")? });
    }
    tx.execute("DELETE FROM collections WHERE name = ?1", params![name]).ctx(CONTEXT)?;
    tx.commit().ctx(CONTEXT)?;
    Ok(RemoveCollection::Removed(record))
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
    })
}
