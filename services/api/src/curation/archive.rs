//! Archiving images (all but one of each exact group, or a selection) and restoring
//! them. The manifest is stored before any file moves; the moves run off the async
//! runtime; the points of what moved leave the index in one delete; the manifest is
//! stored again with each entry's outcome. A restore works from whatever the manifest
//! and the disk say, so it also undoes an archive cut short by a crash.

use std::path::{Path, PathBuf};

use chrono::Utc;
use uuid::Uuid;

use imgidx_shared::jobs::ArchiveRecord;
use imgidx_shared::sources::ImageSource;
use imgidx_shared::vectors::Point;

use super::manifest::{ArchiveKind, ArchiveView, Entry, EntryState, Manifest, Snapshot};
use super::moves::{destination, move_file, root_of};
use crate::error::ApiError;
use crate::state::ApiDeps;
use crate::target::Target;

/// What to archive, and where to.
pub struct ArchiveRequest<'a> {
    pub kind: ArchiveKind,
    /// Relative to each root: `_duplicates`, `_archive/<name>`.
    pub folder: PathBuf,
    pub task_id: Option<String>,
    pub points: Vec<Point>,
    pub dry_run: bool,
    pub roots: &'a [PathBuf],
}

pub async fn archive(deps: &ApiDeps, target: &Target, request: ArchiveRequest<'_>) -> Result<ArchiveView, ApiError> {
    let entries = request.points.iter().map(|p| plan(p, request.roots, &request.folder)).collect();
    let mut manifest = Manifest {
        archive_id: format!("arc_{}", Uuid::new_v4().simple()),
        kind: request.kind,
        folder: request.folder.display().to_string(),
        collection: target.record.name.clone(),
        physical: target.physical.clone(),
        task_id: request.task_id,
        created_at: Utc::now(),
        entries,
    };
    if request.dry_run {
        return Ok(ArchiveView::of(&manifest, true, None));
    }
    deps.jobs.save_archive(&record(&manifest)?).await?;
    let (roots, mut entries) = (request.roots.to_vec(), std::mem::take(&mut manifest.entries));
    manifest.entries = tokio::task::spawn_blocking(move || {
        entries.iter_mut().for_each(|e| carry_out(e, &roots));
        entries
    })
    .await
    .map_err(|e| ApiError::Internal(format!("archive moves stopped: {e}")))?;
    let gone: Vec<Uuid> =
        manifest.entries.iter().filter(|e| matches!(e.state, EntryState::Moved | EntryState::Unindexed)).map(|e| e.point_id).collect();
    let deleted = target.store.delete(&gone).await;
    deps.jobs.save_archive(&record(&manifest)?).await?;
    deleted?;
    tracing::info!(archive_id = manifest.archive_id, kind = manifest.kind.as_str(), images = gone.len(), "archived");
    Ok(ArchiveView::of(&manifest, false, None))
}

/// Puts the archive's files back where they were and its points back in the index.
pub async fn restore(deps: &ApiDeps, roots: &[PathBuf], archive_id: &str) -> Result<ArchiveView, ApiError> {
    let (mut manifest, restored_at) = stored(deps, archive_id).await?;
    if restored_at.is_some() {
        return Err(ApiError::ArchiveRestored(archive_id.to_owned()));
    }
    let target = Target::of_job(deps, Some(&manifest.physical)).await?;
    let (roots, mut entries) = (roots.to_vec(), std::mem::take(&mut manifest.entries));
    manifest.entries = tokio::task::spawn_blocking(move || {
        entries.iter_mut().for_each(|e| put_back(e, &roots));
        entries
    })
    .await
    .map_err(|e| ApiError::Internal(format!("restore moves stopped: {e}")))?;
    let points: Vec<Point> = manifest
        .entries
        .iter()
        .filter(|e| e.state == EntryState::Restored)
        .filter_map(|e| e.snapshot.point(e.point_id))
        .collect();
    let upserted = target.store.upsert(points).await;
    deps.jobs.save_archive(&record(&manifest)?).await?;
    upserted?;
    deps.jobs.mark_restored(archive_id).await?;
    let restored_at = deps.jobs.archive(archive_id).await?.and_then(|r| r.restored_at);
    tracing::info!(archive_id, "archive restored");
    Ok(ArchiveView::of(&manifest, false, restored_at))
}

/// The archive as the API shows it.
pub async fn view(deps: &ApiDeps, archive_id: &str) -> Result<ArchiveView, ApiError> {
    let (manifest, restored_at) = stored(deps, archive_id).await?;
    Ok(ArchiveView::of(&manifest, false, restored_at))
}

/// The archive's manifest as stored, and when it was restored.
async fn stored(deps: &ApiDeps, archive_id: &str) -> Result<(Manifest, Option<chrono::DateTime<Utc>>), ApiError> {
    let record = deps.jobs.archive(archive_id).await?.ok_or_else(|| ApiError::ArchiveNotFound(archive_id.to_owned()))?;
    let manifest = Manifest::from_json(record.manifest)
        .map_err(|e| ApiError::Internal(format!("archive {archive_id}: the stored manifest does not parse: {e}")))?;
    Ok((manifest, record.restored_at))
}

fn record(manifest: &Manifest) -> Result<ArchiveRecord, ApiError> {
    Ok(ArchiveRecord {
        archive_id: manifest.archive_id.clone(),
        kind: manifest.kind.as_str().to_owned(),
        collection: manifest.physical.clone(),
        manifest: manifest.to_json().map_err(|e| ApiError::Internal(format!("archive manifest: {e}")))?,
        created_at: manifest.created_at,
        restored_at: None,
    })
}

/// Where the image goes: a file under a root into `folder` there; anything else (an
/// upload, a URL) nowhere, only its point leaves the index.
fn plan(point: &Point, roots: &[PathBuf], folder: &Path) -> Entry {
    let mut entry = Entry {
        point_id: point.id,
        from: point.payload.path.clone(),
        to: None,
        state: EntryState::Planned,
        error: None,
        snapshot: Snapshot::of(point),
    };
    if let Some(ImageSource::File(path)) = ImageSource::parse(&point.payload.path) {
        match destination(Path::new(path), roots, folder) {
            Some(to) => entry.to = Some(to.display().to_string()),
            None => {
                entry.state = EntryState::Failed;
                entry.error = Some("the file is under none of the allowed roots; left where it is".into());
            }
        }
    }
    entry
}

fn carry_out(entry: &mut Entry, roots: &[PathBuf]) {
    if entry.state != EntryState::Planned {
        return;
    }
    let Some(to) = entry.to.as_deref() else {
        entry.state = EntryState::Unindexed;
        return;
    };
    match relocate(Path::new(&entry.from), Path::new(to), Path::new(&entry.from), roots) {
        Ok(()) => entry.state = EntryState::Moved,
        Err(e) => {
            entry.state = EntryState::Failed;
            entry.error = Some(e.to_string());
        }
    }
}

fn put_back(entry: &mut Entry, roots: &[PathBuf]) {
    let to = match (entry.state, entry.to.as_deref()) {
        (EntryState::Unindexed, _) | (EntryState::Planned, None) => {
            entry.state = EntryState::Restored;
            return;
        }
        (EntryState::Moved | EntryState::Planned, Some(to)) => to.to_owned(),
        // Never moved, or already settled.
        _ => return,
    };
    let (from, to) = (Path::new(&entry.from), Path::new(&to));
    // A planned entry whose file never moved (the archive was cut short) needs no move.
    if entry.state == EntryState::Planned && from.exists() && !to.exists() {
        entry.state = EntryState::Restored;
        return;
    }
    match relocate(to, from, from, roots) {
        Ok(()) => {
            entry.state = EntryState::Restored;
            entry.error = None;
        }
        Err(e) => {
            entry.state = EntryState::NotRestored;
            entry.error = Some(e.to_string());
        }
    }
}

/// Moves `from` to `to` inside the root that `original` (the image's indexed path) lies under.
fn relocate(from: &Path, to: &Path, original: &Path, roots: &[PathBuf]) -> std::io::Result<()> {
    let root = root_of(original, roots).ok_or_else(|| std::io::Error::other("under no allowed root"))?;
    move_file(from, to, &root)
}
