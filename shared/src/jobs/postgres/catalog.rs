//! The collection catalog (see `jobs/catalog.rs`) for PostgreSQL. Changes that check
//! before they write take a transaction-scoped advisory lock first, so two APIs creating,
//! removing or selecting collections at once see each other's result.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::PgResultExt;
use crate::collections::{CollectionRecord, Distance, NextGeneration};
use crate::jobs::catalog::{AddCollection, BeginSwitch, ForgetPrevious, RemoveCollection, SwitchCompleted, SELECTED_KEY};
use crate::jobs::JobStoreError;

const COLUMNS: &str = "name, physical, previous, model, dim, distance, scoped_ids, created_at";
const NEXT_COLUMNS: &str = "next_physical, next_model, next_dim, next_job, next_started_at";

/// Advisory lock serialising catalog changes ("imgidx" in ASCII, then 2).
const CATALOG_LOCK_KEY: i64 = 0x0069_6d67_6964_7802;

async fn lock(tx: &deadpool_postgres::Transaction<'_>, context: &str) -> Result<(), JobStoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CATALOG_LOCK_KEY]).await.ctx(context)?;
    Ok(())
}

pub(super) async fn ensure_initial(
    client: &mut deadpool_postgres::Client,
    record: &CollectionRecord,
) -> Result<CollectionRecord, JobStoreError> {
    const CONTEXT: &str = "ensure_initial_collection";
    let tx = client.transaction().await.ctx(CONTEXT)?;
    lock(&tx, CONTEXT).await?;
    insert(&tx, record, CONTEXT).await?;
    tx.execute(
        "INSERT INTO server_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        &[&SELECTED_KEY, &record.name],
    )
    .await
    .ctx(CONTEXT)?;
    let stored = get(&tx, &record.name)
        .await?
        .ok_or_else(|| JobStoreError::Other(format!("{CONTEXT}: collection {} vanished", record.name)))?;
    tx.commit().await.ctx(CONTEXT)?;
    Ok(stored)
}

pub(super) async fn add(
    client: &mut deadpool_postgres::Client,
    record: &CollectionRecord,
    max: usize,
) -> Result<AddCollection, JobStoreError> {
    const CONTEXT: &str = "add_collection";
    let tx = client.transaction().await.ctx(CONTEXT)?;
    lock(&tx, CONTEXT).await?;
    if let Some(existing) = get(&tx, &record.name).await? {
        return Ok(AddCollection::Exists(Box::new(existing)));
    }
    let n: i64 = tx.query_one("SELECT count(*) FROM collections", &[]).await.ctx(CONTEXT)?.try_get(0).ctx(CONTEXT)?;
    if u64::try_from(n).unwrap_or(0) >= max as u64 {
        return Ok(AddCollection::Full);
    }
    insert(&tx, record, CONTEXT).await?;
    tx.commit().await.ctx(CONTEXT)?;
    Ok(AddCollection::Added)
}

async fn insert(tx: &impl GenericClient, r: &CollectionRecord, context: &str) -> Result<(), JobStoreError> {
    let dim = i32::try_from(r.dim).map_err(|_| JobStoreError::Other(format!("{context}: dim out of range")))?;
    tx.execute(
        &format!(
            "INSERT INTO collections ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING"
        ),
        &[&r.name, &r.physical, &r.previous, &r.model, &dim, &r.distance.as_str(), &r.scoped_ids, &r.created_at],
    )
    .await
    .ctx(context)?;
    Ok(())
}

pub(super) async fn get(client: &impl GenericClient, name: &str) -> Result<Option<CollectionRecord>, JobStoreError> {
    let row = client
        .query_opt(&format!("SELECT {COLUMNS}, {NEXT_COLUMNS} FROM collections WHERE name = $1"), &[&name])
        .await
        .ctx("collection")?;
    row.as_ref().map(from_row).transpose()
}

pub(super) async fn all(client: &impl GenericClient) -> Result<Vec<CollectionRecord>, JobStoreError> {
    let rows = client
        .query(&format!("SELECT {COLUMNS}, {NEXT_COLUMNS} FROM collections ORDER BY name"), &[])
        .await
        .ctx("collections")?;
    rows.iter().map(from_row).collect()
}

pub(super) async fn remove(client: &mut deadpool_postgres::Client, name: &str) -> Result<RemoveCollection, JobStoreError> {
    const CONTEXT: &str = "remove_collection";
    let tx = client.transaction().await.ctx(CONTEXT)?;
    lock(&tx, CONTEXT).await?;
    let Some(record) = get(&tx, name).await? else {
        return Ok(RemoveCollection::Missing);
    };
    if selected(&tx).await?.as_deref() == Some(name) {
        return Ok(RemoveCollection::Selected);
    }
    // Jobs are created without the catalog lock: a job created by a request that resolved
    // the collection just before this check fails its upserts (collection_missing) instead.
    let active: i64 = tx
        .query_one(
            "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running') AND collection IN ($1, $2, $3)",
            &[
                &record.physical,
                &record.previous.as_deref().unwrap_or(&record.physical),
                &record.next.as_ref().map_or(record.physical.as_str(), |n| n.physical.as_str()),
            ],
        )
        .await
        .ctx(CONTEXT)?
        .try_get(0)
        .ctx(CONTEXT)?;
    if active > 0 {
        return Ok(RemoveCollection::Busy { active_jobs: active.unsigned_abs() });
    }
    tx.execute("DELETE FROM collections WHERE name = $1", &[&name]).await.ctx(CONTEXT)?;
    tx.commit().await.ctx(CONTEXT)?;
    Ok(RemoveCollection::Removed(Box::new(record)))
}

pub(super) async fn select(client: &mut deadpool_postgres::Client, name: &str) -> Result<bool, JobStoreError> {
    const CONTEXT: &str = "select_collection";
    let tx = client.transaction().await.ctx(CONTEXT)?;
    lock(&tx, CONTEXT).await?;
    if get(&tx, name).await?.is_none() {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO server_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&SELECTED_KEY, &name],
    )
    .await
    .ctx(CONTEXT)?;
    tx.commit().await.ctx(CONTEXT)?;
    Ok(true)
}

pub(super) async fn selected(client: &impl GenericClient) -> Result<Option<String>, JobStoreError> {
    let row = client
        .query_opt("SELECT value FROM server_settings WHERE key = $1", &[&SELECTED_KEY])
        .await
        .ctx("selected_collection")?;
    row.map(|r| r.try_get(0)).transpose().ctx("selected_collection")
}

pub(super) async fn begin_switch(
    client: &mut deadpool_postgres::Client,
    name: &str,
    next: &NextGeneration,
) -> Result<BeginSwitch, JobStoreError> {
    const CONTEXT: &str = "begin_switch";
    let tx = client.transaction().await.ctx(CONTEXT)?;
    lock(&tx, CONTEXT).await?;
    let Some(record) = get(&tx, name).await? else {
        return Ok(BeginSwitch::Missing);
    };
    if let Some(pending) = record.next {
        return Ok(BeginSwitch::Switching(pending));
    }
    // Jobs of the initial collection from before collections name none.
    let active: i64 = tx
        .query_one(
            "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running') AND (collection = $1 OR (collection IS NULL AND $2))",
            &[&record.physical, &!record.scoped_ids],
        )
        .await
        .ctx(CONTEXT)?
        .try_get(0)
        .ctx(CONTEXT)?;
    if active > 0 {
        return Ok(BeginSwitch::Busy { active_jobs: active.unsigned_abs() });
    }
    let dim = i32::try_from(next.dim).map_err(|_| JobStoreError::Other(format!("{CONTEXT}: dim out of range")))?;
    tx.execute(
        "UPDATE collections SET next_physical = $2, next_model = $3, next_dim = $4, next_job = $5, next_started_at = $6
         WHERE name = $1",
        &[&name, &next.physical, &next.model, &dim, &next.job_id, &next.started_at],
    )
    .await
    .ctx(CONTEXT)?;
    let after =
        get(&tx, name).await?.ok_or_else(|| JobStoreError::Other(format!("{CONTEXT}: collection {name} vanished")))?;
    tx.commit().await.ctx(CONTEXT)?;
    Ok(BeginSwitch::Started(after))
}

/// The record of `name` when its pending switch is the one `job_id` fills.
async fn switching(tx: &impl GenericClient, name: &str, job_id: &str) -> Result<Option<CollectionRecord>, JobStoreError> {
    Ok(get(tx, name).await?.filter(|r| r.next.as_ref().is_some_and(|n| n.job_id == job_id)))
}

pub(super) async fn complete_switch(
    client: &mut deadpool_postgres::Client,
    name: &str,
    job_id: &str,
) -> Result<Option<SwitchCompleted>, JobStoreError> {
    const CONTEXT: &str = "complete_switch";
    let tx = client.transaction().await.ctx(CONTEXT)?;
    lock(&tx, CONTEXT).await?;
    let Some(before) = switching(&tx, name, job_id).await? else {
        return Ok(None);
    };
    // Every right-hand side reads the row as it was.
    tx.execute(
        "UPDATE collections SET previous = physical, physical = next_physical, model = next_model, dim = next_dim,
             next_physical = NULL, next_model = NULL, next_dim = NULL, next_job = NULL, next_started_at = NULL
         WHERE name = $1",
        &[&name],
    )
    .await
    .ctx(CONTEXT)?;
    let record =
        get(&tx, name).await?.ok_or_else(|| JobStoreError::Other(format!("{CONTEXT}: collection {name} vanished")))?;
    tx.commit().await.ctx(CONTEXT)?;
    Ok(Some(SwitchCompleted { record, replaced: before.previous }))
}

pub(super) async fn abandon_switch(
    client: &mut deadpool_postgres::Client,
    name: &str,
    job_id: &str,
) -> Result<Option<String>, JobStoreError> {
    const CONTEXT: &str = "abandon_switch";
    let tx = client.transaction().await.ctx(CONTEXT)?;
    lock(&tx, CONTEXT).await?;
    let Some(next) = switching(&tx, name, job_id).await?.and_then(|r| r.next) else {
        return Ok(None);
    };
    tx.execute(
        "UPDATE collections SET next_physical = NULL, next_model = NULL, next_dim = NULL, next_job = NULL,
             next_started_at = NULL
         WHERE name = $1",
        &[&name],
    )
    .await
    .ctx(CONTEXT)?;
    tx.commit().await.ctx(CONTEXT)?;
    Ok(Some(next.physical))
}

pub(super) async fn forget_previous(client: &mut deadpool_postgres::Client, name: &str) -> Result<ForgetPrevious, JobStoreError> {
    const CONTEXT: &str = "forget_previous";
    let tx = client.transaction().await.ctx(CONTEXT)?;
    lock(&tx, CONTEXT).await?;
    let Some(record) = get(&tx, name).await? else {
        return Ok(ForgetPrevious::Missing);
    };
    let Some(previous) = record.previous else {
        return Ok(ForgetPrevious::NoPrevious);
    };
    tx.execute("UPDATE collections SET previous = NULL WHERE name = $1", &[&name]).await.ctx(CONTEXT)?;
    tx.commit().await.ctx(CONTEXT)?;
    Ok(ForgetPrevious::Forgotten(previous))
}

fn from_row(row: &Row) -> Result<CollectionRecord, JobStoreError> {
    const CONTEXT: &str = "reading a collection";
    let distance: &str = row.try_get("distance").ctx(CONTEXT)?;
    let dim: i32 = row.try_get("dim").ctx(CONTEXT)?;
    Ok(CollectionRecord {
        name: row.try_get("name").ctx(CONTEXT)?,
        physical: row.try_get("physical").ctx(CONTEXT)?,
        previous: row.try_get("previous").ctx(CONTEXT)?,
        model: row.try_get("model").ctx(CONTEXT)?,
        dim: usize::try_from(dim).map_err(|_| JobStoreError::Other(format!("{CONTEXT}: bad dim {dim}")))?,
        distance: Distance::parse(distance)
            .ok_or_else(|| JobStoreError::Other(format!("{CONTEXT}: unknown distance {distance:?}")))?,
        scoped_ids: row.try_get("scoped_ids").ctx(CONTEXT)?,
        created_at: row.try_get("created_at").ctx(CONTEXT)?,
        next: next_from_row(row)?,
    })
}

/// The five columns are all set or all NULL (a table constraint says so).
fn next_from_row(row: &Row) -> Result<Option<NextGeneration>, JobStoreError> {
    const CONTEXT: &str = "reading a collection's next generation";
    let Some(physical) = row.try_get::<_, Option<String>>("next_physical").ctx(CONTEXT)? else {
        return Ok(None);
    };
    let dim: i32 = row.try_get("next_dim").ctx(CONTEXT)?;
    Ok(Some(NextGeneration {
        physical,
        model: row.try_get("next_model").ctx(CONTEXT)?,
        dim: usize::try_from(dim).map_err(|_| JobStoreError::Other(format!("{CONTEXT}: bad dim {dim}")))?,
        job_id: row.try_get("next_job").ctx(CONTEXT)?,
        started_at: row.try_get("next_started_at").ctx(CONTEXT)?,
    }))
}
