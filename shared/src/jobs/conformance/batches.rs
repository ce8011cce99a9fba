//! Seed 004's batch jobs, for every backend (run from `conformance.rs`).

use uuid::Uuid;

use super::harness::Harness;
use super::{failed, indexed, item, items};
use crate::jobs::{BatchImage, ItemKey, ItemState, JobStatus};
use crate::messages::{CompletionEvent, FailureKind, Priority};

fn image(index: u32, name: &str, n: u128) -> BatchImage {
    BatchImage { index, name: name.into(), point_id: Uuid::from_u128(n) }
}

pub(super) async fn a_batch_holds_every_image_in_request_order_with_its_state(h: &Harness) {
    let s = h.store();
    // Point 2 is pending in another job: the batch holds it all the same.
    assert_eq!(s.create_job("other", Priority::Normal, &[item(2)]).await.unwrap().len(), 1);
    let images = [image(0, "b.jpg", 1), image(1, "a.jpg", 2), image(2, "c.jpg", 3), image(3, "b again.jpg", 1)];
    s.create_batch_job("batch", Priority::High, Some("cats__1"), &items(1..4), &images).await.unwrap();
    let job = s.job("batch").await.unwrap().unwrap();
    assert_eq!((job.status, job.total_images, job.collection.as_deref()), (JobStatus::Queued, 3, Some("cats__1")));

    let got = s.batch_images("batch").await.unwrap().unwrap();
    let names: Vec<(u32, &str, Uuid)> = got.iter().map(|i| (i.index, i.name.as_str(), i.point_id)).collect();
    assert_eq!(names, images.iter().map(|i| (i.index, i.name.as_str(), i.point_id)).collect::<Vec<_>>());
    assert!(got.iter().all(|i| i.state == ItemState::Pending && i.attempts == 0 && i.started_at.is_none()));
    assert_eq!(got[0].path, "/images/1.jpg");

    // Started, then finished: the times say when.
    s.count_attempts(&[ItemKey { job_id: "batch".into(), point_id: Uuid::from_u128(1) }], true).await.unwrap();
    let stored = CompletionEvent { object_key: Some("ab/cd".into()), ..indexed("batch", 1) };
    s.apply_events(&[stored, failed("batch", 3, FailureKind::NotAnImage, "not an image")]).await.unwrap();
    let got = s.batch_images("batch").await.unwrap().unwrap();
    let (first, third) = (&got[0], &got[2]);
    assert_eq!((first.state, first.attempts, first.object_key.as_deref()), (ItemState::Indexed, 1, Some("ab/cd")));
    assert_eq!(third.object_key, None);
    assert!(first.started_at.is_some() && first.started_at <= first.finished_at, "{first:?}");
    assert_eq!((third.state, third.failure_kind.as_deref(), third.reason.as_deref()), (ItemState::Failed, Some("not_an_image"), Some("not an image")));
    assert_eq!(got[3].state, ItemState::Indexed, "the same image twice is one item");
    assert_eq!(got[1].state, ItemState::Pending);
    // The other job's claim is untouched: its item finishes for it.
    s.apply_events(&[indexed("batch", 2)]).await.unwrap();
    assert_eq!(s.job("batch").await.unwrap().unwrap().status, JobStatus::Completed);
    assert_eq!(s.job("other").await.unwrap().unwrap().status, JobStatus::Queued);

    assert_eq!(s.batch_images("other").await.unwrap(), None, "a job that is no batch");
    assert_eq!(s.batch_images("nope").await.unwrap(), None);
    s.create_batch_job("batch2", Priority::Normal, None, &items(7..8), &[image(0, "x.png", 7)]).await.unwrap();
    assert_eq!(s.batch_jobs(10).await.unwrap(), ["batch2", "batch"]);
    assert_eq!(s.batch_jobs(1).await.unwrap(), ["batch2"]);

    // Only finished batches go; the other job stays for `purge_finished`.
    s.apply_events(&[indexed("other", 2)]).await.unwrap();
    let later = chrono::Utc::now() + chrono::Duration::seconds(5);
    assert_eq!(s.purge_batches(later, 10).await.unwrap(), 1);
    assert_eq!(s.batch_jobs(10).await.unwrap(), ["batch2"], "batch2 is still queued");
    assert!(s.job("batch").await.unwrap().is_none() && s.job("other").await.unwrap().is_some());
    assert_eq!(s.batch_images("batch").await.unwrap(), None);
}
