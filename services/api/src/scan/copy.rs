//! A scan that reads a collection instead of a directory: a model switch's re-embed
//! (`POST /api/v1/collections/{name}/reembed`). It pages through the points of the
//! collection's current generation and queues each image into the next one, which the
//! workers embed with the next generation's model, from the same path (a file on the
//! server, an uploaded object) or, for an image fetched from a URL, from the object its
//! bytes were kept in. Under the same lease as a directory walk, so a walk cut short
//! starts over elsewhere; points the next generation holds already are not queued again.

use std::collections::HashMap;

use uuid::Uuid;

use imgidx_shared::jobs::{NewItem, ScanCounts};
use imgidx_shared::sources::ImageSource;
use imgidx_shared::vectors::Point;

use super::run::{finish, queue_items, Ended, WalkError};
use super::{Scanner, Walk};
use crate::target::Target;

/// Points read per page: one claim, one stamp lookup and one publish each.
const PAGE_POINTS: usize = 256;

pub(super) async fn drive(scanner: &Scanner, walk: &Walk, source: &str) -> Result<Ended, WalkError> {
    let target = Target::of_job(&scanner.deps, walk.spec.collection.as_deref()).await?;
    // The source is the generation the switch started from, which stays current until
    // the switch completes (or is abandoned, which ends this job).
    let Some((_, dim)) = target.record.model_of(source) else {
        return Err(WalkError::Task(format!("collection {source} is no longer the generation being re-embedded")));
    };
    let from_store = scanner.deps.collections.open(source, dim, None).await?;
    let mut counts = ScanCounts::default();
    let mut from = None;
    loop {
        let page = tokio::select! {
            () = scanner.shutdown.cancelled() => return Ok(Ended::Shutdown),
            page = from_store.points_page(from, PAGE_POINTS) => page?,
        };
        counts.files_seen += page.points.len() as u64;
        counts.images_found += page.points.len() as u64;
        let kept = kept_objects(&page.points);
        let candidates: Vec<NewItem> = page
            .points
            .into_iter()
            .map(|p| NewItem { point_id: p.id, stamp: Some(p.payload.stamp()), path: p.payload.path })
            .collect();
        if !queue_items(scanner, walk, &target, candidates, &counts, &kept).await? {
            return Ok(Ended::Stopped);
        }
        match page.next {
            Some(next) => from = Some(next),
            None => break,
        }
    }
    finish(scanner, walk, &counts).await
}

/// The object each URL image's bytes were kept in when it was fetched: the re-embed
/// reads them there, not from a server that may have changed or gone.
fn kept_objects(points: &[Point]) -> HashMap<Uuid, String> {
    points
        .iter()
        .filter(|p| matches!(ImageSource::parse(&p.payload.path), Some(ImageSource::Url(_))))
        .filter(|p| !p.payload.object_key.is_empty())
        .map(|p| (p.id, p.payload.object_key.clone()))
        .collect()
}
