//! Directory scans, for every backend (run from `conformance.rs`).

use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};

use super::harness::Harness;
use super::{failed, indexed, item, items};
use crate::jobs::{JobStatus, ScanChunk, ScanCounts, ScanOpened, ScanSpec};
use crate::messages::{FailureKind, Priority};

fn spec(dir: &str) -> ScanSpec {
    ScanSpec { dir: dir.into(), recursive: true, force_reindex: false, prune_missing: false, collection: None }
}

fn counts(files_seen: u64, images_found: u64) -> ScanCounts {
    ScanCounts { files_seen, images_found, ..ScanCounts::default() }
}

const HOUR: StdDuration = StdDuration::from_secs(3600);

pub(super) async fn a_scan_job_grows_and_completes_only_once_its_walk_ends(h: &Harness) {
    let s = h.store();
    assert_eq!(s.open_scan("s", Priority::Normal, &spec("/d"), "o1").await.unwrap(), ScanOpened::Created);
    // The same directory while it runs: the running job answers, nothing is created.
    let again = s.open_scan("s2", Priority::High, &spec("/d"), "o2").await.unwrap();
    assert_eq!(again, ScanOpened::Running { job_id: "s".into() });
    assert!(s.job("s2").await.unwrap().is_none());
    let job = s.job("s").await.unwrap().unwrap();
    assert_eq!((job.status, job.total_images, job.scanning), (JobStatus::Queued, 0, true));
    // Its walk publishes every chunk itself: the reconcile leaves it alone.
    assert!(s.unpublished_items(Utc::now() + Duration::seconds(1), None, 10).await.unwrap().is_empty());

    let chunk = s.add_scan_items("s", "o1", &items(0..3), &counts(5, 3)).await.unwrap();
    assert_eq!(chunk, ScanChunk::Added { publish: items(0..3), new: 3, already_queued: 0 });
    s.create_job("k", Priority::Normal, &[item(3)]).await.unwrap();
    // Item 2 is the job's already (a walk that started over meets it again): published
    // again, not counted again; item 3 is another job's.
    let chunk = s.add_scan_items("s", "o1", &items(2..5), &counts(9, 6)).await.unwrap();
    assert_eq!(chunk, ScanChunk::Added { publish: vec![item(2), item(4)], new: 1, already_queued: 1 });
    assert_eq!(s.job("s").await.unwrap().unwrap().total_images, 4);

    let after = s.apply_events(&[indexed("s", 0), indexed("s", 1), indexed("s", 2), indexed("s", 4)]).await.unwrap().jobs;
    assert_eq!((after[0].status, after[0].processed_images, after[0].completed_at), (JobStatus::Running, 4, None));
    let scan = s.job_scan("s").await.unwrap().unwrap();
    assert_eq!((scan.spec, scan.counts, scan.done), (spec("/d"), counts(9, 6), false));

    let done = ScanCounts { removed: 2, ..counts(10, 6) };
    let job = s.finish_scan("s", "o1", &done).await.unwrap().unwrap();
    assert_eq!((job.status, job.total_images, job.scanning), (JobStatus::Completed, 4, false));
    assert!(job.completed_at.is_some());
    let scan = s.job_scan("s").await.unwrap().unwrap();
    assert_eq!((scan.counts, scan.done), (done, true));
    assert!(s.job_scan("k").await.unwrap().is_none(), "add-images jobs have no scan");
    // Finished: the directory may be scanned again.
    assert_eq!(s.open_scan("s3", Priority::Normal, &spec("/d"), "o1").await.unwrap(), ScanOpened::Created);
}

pub(super) async fn a_finished_walk_ends_its_job_as_its_items_say(h: &Harness) {
    let s = h.store();
    // Nothing found (or all unchanged): completed, with no items.
    s.open_scan("empty", Priority::Normal, &spec("/e"), "o").await.unwrap();
    let job = s.finish_scan("empty", "o", &counts(3, 0)).await.unwrap().unwrap();
    assert_eq!((job.status, job.total_images), (JobStatus::Completed, 0));
    // Every image failed before the walk ended: failed, with the usual summary.
    s.open_scan("bad", Priority::Normal, &spec("/b"), "o").await.unwrap();
    s.add_scan_items("bad", "o", &items(0..2), &counts(2, 2)).await.unwrap();
    s.apply_events(&[failed("bad", 0, FailureKind::NotAnImage, "x"), failed("bad", 1, FailureKind::NotAnImage, "y")])
        .await
        .unwrap();
    let job = s.finish_scan("bad", "o", &counts(2, 2)).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert!(job.error_message.unwrap().starts_with("all 2 images failed: 2 not_an_image"));
    // Items still pending when the walk ends: the last event completes the job.
    s.open_scan("busy", Priority::Normal, &spec("/c"), "o").await.unwrap();
    s.add_scan_items("busy", "o", &items(10..12), &counts(2, 2)).await.unwrap();
    let job = s.finish_scan("busy", "o", &counts(2, 2)).await.unwrap().unwrap();
    assert_eq!((job.status, job.scanning), (JobStatus::Queued, false));
    assert!(s.finish_scan("busy", "o", &counts(2, 2)).await.unwrap().is_none(), "a walk ends once");
    let after = s.apply_events(&[indexed("busy", 10), indexed("busy", 11)]).await.unwrap().jobs;
    assert_eq!(after[0].status, JobStatus::Completed);
}

pub(super) async fn stale_walks_are_taken_over_and_the_old_walker_is_stopped(h: &Harness) {
    let s = h.store();
    s.open_scan("s", Priority::Low, &spec("/d"), "o1").await.unwrap();
    assert!(s.claim_stale_scans(HOUR, "o2", 10).await.unwrap().is_empty(), "its heartbeat is fresh");
    s.release_scan("s", "o2").await.unwrap(); // not o2's: no effect
    assert!(s.claim_stale_scans(HOUR, "o2", 10).await.unwrap().is_empty());
    s.release_scan("s", "o1").await.unwrap();
    let taken = s.claim_stale_scans(HOUR, "o2", 10).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].job_id.as_str(), taken[0].priority, &taken[0].spec), ("s", Priority::Low, &spec("/d")));
    assert!(s.claim_stale_scans(HOUR, "o3", 10).await.unwrap().is_empty(), "taken once");
    // The old walker is fenced off; the new one goes on.
    assert_eq!(s.add_scan_items("s", "o1", &items(0..2), &counts(2, 2)).await.unwrap(), ScanChunk::Stopped);
    assert!(s.finish_scan("s", "o1", &counts(2, 2)).await.unwrap().is_none());
    let chunk = s.add_scan_items("s", "o2", &items(0..2), &counts(2, 2)).await.unwrap();
    assert!(matches!(chunk, ScanChunk::Added { new: 2, .. }), "{chunk:?}");
    s.apply_events(&[indexed("s", 0)]).await.unwrap();
    // A heartbeat older than the lease is stale too.
    tokio::time::sleep(StdDuration::from_millis(20)).await;
    let taken = s.claim_stale_scans(StdDuration::from_millis(10), "o3", 10).await.unwrap();
    assert_eq!(taken.len(), 1);
    // Walking again: what this job indexed already is neither queued nor counted again,
    // and its claim is not kept; what is still pending is published again.
    let chunk = s.add_scan_items("s", "o3", &items(0..2), &counts(2, 2)).await.unwrap();
    assert_eq!(chunk, ScanChunk::Added { publish: vec![item(1)], new: 0, already_queued: 0 });
    assert_eq!(h.claims_of("s").await, vec![item(1).point_id]);
    assert_eq!(s.job("s").await.unwrap().unwrap().total_images, 2);
}

pub(super) async fn cancelling_a_scanning_job_stops_its_walk(h: &Harness) {
    let s = h.store();
    s.open_scan("s", Priority::Normal, &spec("/d"), "o").await.unwrap();
    s.add_scan_items("s", "o", &items(0..2), &counts(2, 2)).await.unwrap();
    s.cancel_job("s").await.unwrap();
    let job = s.job("s").await.unwrap().unwrap();
    assert_eq!((job.status, job.scanning), (JobStatus::Cancelled, false));
    assert_eq!(s.add_scan_items("s", "o", &items(2..3), &counts(3, 3)).await.unwrap(), ScanChunk::Stopped);
    assert!(s.finish_scan("s", "o", &counts(3, 3)).await.unwrap().is_none());
    assert!(s.job_scan("s").await.unwrap().unwrap().done);
    assert!(s.claim_stale_scans(StdDuration::ZERO, "o2", 10).await.unwrap().is_empty());
    assert!(h.claims().await.is_empty());
    // Purged with its job.
    s.purge_finished(Utc::now() + Duration::seconds(1), 10).await.unwrap();
    assert!(s.job_scan("s").await.unwrap().is_none());
}
