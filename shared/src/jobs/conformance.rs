//! What every job store backend must do, written once against `&dyn JobStore` and run
//! against SQLite (a temporary file, always) and PostgreSQL (a fresh database per test,
//! when `IMGIDX_TEST_PG_URL` is set; see `postgres/test_db.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod batches;
mod catalog;
mod curation;
mod harness;
mod scans;
mod webhooks;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Duration, Utc};
use uuid::Uuid;

use self::batches::*;
use self::catalog::*;
use self::curation::*;
use self::harness::Harness;
use self::scans::*;
use self::webhooks::*;
use super::{
    AttemptCount, CancelOutcome, ItemKey, ItemPage, ItemState, JobQuery, JobStatus, JobStore, NewItem, RequeueItem,
    RetryCandidates,
};
use crate::messages::{CompletionEvent, FailureKind, FileStamp, Outcome, Priority};

/// Runs each named test body against every backend, as `sqlite::NAME` and `postgres::NAME`.
macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let h = super::harness::sqlite();
                    super::$name(&h).await;
                    h.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(h) = super::harness::postgres().await else { return };
                    super::$name(&h).await;
                    h.finish().await;
                }
            )*
        }
    };
}

conformance_tests!(
    a_batch_holds_every_image_in_request_order_with_its_state,
    create_job_claims_unique_points_in_input_order,
    large_requests_are_claimed_in_one_go,
    concurrent_jobs_never_claim_the_same_point,
    events_move_a_job_through_its_states,
    duplicate_and_unknown_events_change_nothing,
    a_job_with_nothing_indexed_fails_with_a_summary,
    claims_are_released_when_items_finish_or_jobs_fail,
    active_and_recent_jobs_are_ordered,
    failed_images_count_only_when_their_latest_attempt_failed,
    concurrent_aggregators_count_each_item_once,
    requeue_returns_pending_items_of_active_jobs,
    requeue_honours_the_limit_oldest_job_first,
    concurrent_requeues_never_take_the_same_item,
    items_are_listed_by_state_with_their_outcome,
    item_pages_lose_and_repeat_nothing,
    failures_are_counted_by_reason,
    retry_candidates_leave_out_images_indexed_since,
    attempts_are_counted_on_pending_items_only,
    unpublished_jobs_are_listed_until_marked,
    jobs_are_listed_newest_first_by_status_and_priority,
    cancelling_a_job_withdraws_its_pending_items,
    finished_jobs_are_purged,
    workers_are_counted_per_job,
    a_scan_job_grows_and_completes_only_once_its_walk_ends,
    a_finished_walk_ends_its_job_as_its_items_say,
    stale_walks_are_taken_over_and_the_old_walker_is_stopped,
    cancelling_a_scanning_job_stops_its_walk,
    webhooks_wait_for_their_job_then_are_sent_until_delivered,
    an_expired_lease_is_claimed_again_and_cancelled_jobs_announce,
    collections_are_added_listed_selected_and_removed,
    a_collection_with_active_jobs_is_not_removed,
    a_model_switch_moves_a_collection_to_its_next_generation_at_once,
    requeued_items_and_scans_carry_their_collection,
    reused_vectors_are_counted_once_per_job,
    an_analysis_reports_progress_and_ends_once_under_its_lease,
    a_stale_analysis_is_taken_over_and_its_old_runner_is_stopped,
    archives_keep_their_manifest_and_are_restored_once,
);

async fn reused_vectors_are_counted_once_per_job(h: &Harness) {
    let s = h.store();
    s.create_job("j", Priority::Normal, &items(0..4)).await.unwrap();
    let cached = |n| CompletionEvent { from_cache: true, ..indexed("j", n) };
    s.apply_events(&[cached(0), cached(1), indexed("j", 2)]).await.unwrap();
    // A redelivered event counts once; a failure is never from the cache.
    let again = s.apply_events(&[cached(0), CompletionEvent { from_cache: true, ..failed("j", 3, FailureKind::NotFound, "gone") }]).await.unwrap();
    let job = again.jobs.into_iter().next().unwrap();
    assert_eq!((job.status, job.processed_images, job.failed_images, job.from_cache), (JobStatus::Completed, 3, 1, 2));
    assert_eq!(s.job("j").await.unwrap().unwrap().from_cache, 2);
    let items = s.job_items("j", None, None, 10).await.unwrap().items;
    let flags: Vec<(ItemState, bool)> = items.iter().map(|i| (i.state, i.from_cache)).collect();
    assert_eq!(flags, [(ItemState::Indexed, true), (ItemState::Indexed, true), (ItemState::Indexed, false), (ItemState::Failed, false)]);
}

pub(super) fn item(n: u128) -> NewItem {
    NewItem {
        point_id: Uuid::from_u128(n),
        path: format!("/images/{n}.jpg"),
        stamp: Some(FileStamp { size: 1000 + n as u64, mtime_ns: 1_700_000_000_000_000_000 }),
    }
}

pub(super) fn items(range: std::ops::Range<u128>) -> Vec<NewItem> {
    range.map(item).collect()
}

pub(super) fn indexed(job_id: &str, n: u128) -> CompletionEvent {
    CompletionEvent {
        job_id: job_id.into(),
        point_id: Uuid::from_u128(n),
        path: format!("/images/{n}.jpg"),
        outcome: Outcome::Indexed,
        worker: "test".into(),
        request_id: None,
        finished_at_ms: None,
        from_cache: false,
        object_key: None,
    }
}

pub(super) fn failed(job_id: &str, n: u128, kind: FailureKind, reason: &str) -> CompletionEvent {
    CompletionEvent { outcome: Outcome::Failed { kind, reason: reason.into() }, ..indexed(job_id, n) }
}

pub(super) fn requeued(job_id: &str, priority: Priority, item: NewItem) -> RequeueItem {
    RequeueItem { job_id: job_id.into(), priority, item, collection: None }
}

fn points(range: std::ops::Range<u128>) -> Vec<Uuid> {
    range.map(Uuid::from_u128).collect()
}

async fn create_job_claims_unique_points_in_input_order(h: &Harness) {
    let s = h.store();
    let mut candidates = vec![item(3), item(1), item(2)];
    candidates.push(NewItem { path: "/dup/of/1.jpg".into(), ..item(1) });
    let claimed = s.create_job("a", Priority::High, &candidates).await.unwrap();
    assert_eq!(claimed, vec![item(3), item(1), item(2)], "duplicates count once, first occurrence wins");
    let job = s.job("a").await.unwrap().unwrap();
    assert_eq!((job.status, job.priority, job.total_images), (JobStatus::Queued, Priority::High, 3));
    assert_eq!((job.processed_images, job.failed_images, job.started_at, job.completed_at), (0, 0, None, None));
    assert_eq!(job.error_message, None);
    assert!(job.created_at <= Utc::now());

    // Points pending in job a are not claimed again.
    let claimed = s.create_job("b", Priority::Normal, &[item(2), item(4), item(3)]).await.unwrap();
    assert_eq!(claimed, vec![item(4)]);
    assert_eq!(s.job("b").await.unwrap().unwrap().total_images, 1);

    // Nothing claimable: no job.
    assert!(s.create_job("c", Priority::Low, &[item(1), item(4)]).await.unwrap().is_empty());
    assert!(s.job("c").await.unwrap().is_none());
    assert!(s.create_job("d", Priority::Low, &[]).await.unwrap().is_empty());
    assert!(s.job("d").await.unwrap().is_none());
    assert_eq!(h.claims_of("a").await, points(1..4));
    assert_eq!(h.claims_of("b").await, points(4..5));

    // A job id is used once.
    assert!(s.create_job("a", Priority::Low, &[item(9)]).await.is_err());
    assert_eq!(h.claims_of("a").await, points(1..4), "the failed create claimed nothing");
    assert_eq!(s.create_job("e", Priority::Low, &[item(9)]).await.unwrap(), vec![item(9)]);
}

async fn large_requests_are_claimed_in_one_go(h: &Harness) {
    let s = h.store();
    let mut many = items(0..10_000);
    many[5].stamp = None;
    many[6].path = "/images/ünïcödé 'quoted'.jpg".into();
    let claimed = s.create_job("big", Priority::Normal, &many).await.unwrap();
    assert_eq!(claimed, many);
    assert_eq!(s.job("big").await.unwrap().unwrap().total_images, 10_000);
    // What was stored comes back as it was given.
    let back = s.requeue_stale_items(Utc::now() + Duration::seconds(1), 20_000).await.unwrap();
    let back: Vec<NewItem> = back.into_iter().map(|r| r.item).collect();
    assert_eq!(back, many, "point_id order is input order here");
}

async fn concurrent_jobs_never_claim_the_same_point(h: &Harness) {
    let seen = claim_concurrently(&[h.shared()], 40, 120).await;
    assert_eq!(seen.len(), 7 * 40 + 120, "every point of the union claimed once");
    assert_eq!(h.claims().await.len(), seen.len());
}

/// Eight concurrent `create_job`s over overlapping windows of points (`step` apart,
/// `width` wide, every other one reversed), spread over `stores`: asserts no point is
/// claimed twice and each job's total matches its claims; returns the claimed points.
pub(crate) async fn claim_concurrently(stores: &[Arc<dyn JobStore>], step: u128, width: u128) -> HashSet<Uuid> {
    let tasks: Vec<_> = (0..8u128)
        .map(|k| {
            let store = stores[k as usize % stores.len()].clone();
            tokio::spawn(async move {
                let mut candidates = items(k * step..k * step + width);
                if k % 2 == 1 {
                    candidates.reverse();
                }
                let job_id = format!("job{k}");
                let claimed = store.create_job(&job_id, Priority::Normal, &candidates).await.unwrap();
                (job_id, claimed)
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for task in tasks {
        let (job_id, claimed) = task.await.unwrap();
        for c in &claimed {
            assert!(seen.insert(c.point_id), "{} claimed twice (again by {job_id})", c.point_id);
        }
        if !claimed.is_empty() {
            let total = stores[0].job(&job_id).await.unwrap().unwrap().total_images;
            assert_eq!(total, claimed.len() as u64);
        }
    }
    seen
}

async fn events_move_a_job_through_its_states(h: &Harness) {
    let s = h.store();
    s.create_job("j", Priority::Normal, &items(0..4)).await.unwrap();
    let created = s.job("j").await.unwrap().unwrap();
    assert_eq!(created.percent_complete(), 0.0);

    let changed = s.apply_events(&[indexed("j", 0)]).await.unwrap().jobs;
    assert_eq!(changed.len(), 1);
    let running = &changed[0];
    assert_eq!((running.status, running.processed_images, running.failed_images), (JobStatus::Running, 1, 0));
    let started = running.started_at.expect("started_at set on the first event");
    assert!(started >= created.created_at);
    assert_eq!(running.completed_at, None);
    assert_eq!(running.percent_complete(), 25.0);
    assert_eq!(s.job("j").await.unwrap().as_ref(), Some(running));

    let applied =
        s.apply_events(&[failed("j", 1, FailureKind::NotFound, "no such file"), indexed("j", 2)]).await.unwrap();
    assert_eq!(applied.finished, vec![key("j", 1), key("j", 2)], "in event order");
    let changed = applied.jobs;
    assert_eq!((changed[0].processed_images, changed[0].failed_images), (2, 1));
    assert_eq!(changed[0].started_at, Some(started), "started_at is kept");
    assert_eq!(changed[0].percent_complete(), 75.0);

    let changed = s.apply_events(&[indexed("j", 3)]).await.unwrap().jobs;
    let done = &changed[0];
    assert_eq!((done.status, done.processed_images, done.failed_images), (JobStatus::Completed, 3, 1));
    assert!(done.completed_at.unwrap() >= started);
    assert_eq!(done.error_message, None);
    assert_eq!(done.percent_complete(), 100.0);
    assert_eq!(s.job("j").await.unwrap().as_ref(), Some(done));
    assert!(s.active_jobs().await.unwrap().is_empty());
    assert_eq!(s.last_update().await.unwrap(), done.completed_at);
    assert!(h.claims().await.is_empty());
}

async fn duplicate_and_unknown_events_change_nothing(h: &Harness) {
    let s = h.store();
    s.create_job("j", Priority::Normal, &items(0..3)).await.unwrap();
    // A duplicate inside one batch and across batches, and a late contradicting event.
    let applied = s.apply_events(&[indexed("j", 0), indexed("j", 0)]).await.unwrap();
    assert_eq!(applied.jobs[0].processed_images, 1);
    assert_eq!(applied.finished, vec![key("j", 0)], "finished once");
    let again = s
        .apply_events(&[
            indexed("j", 0),
            failed("j", 0, FailureKind::Unreadable, "late"),
            indexed("nope", 1),
            indexed("j", 99),
        ])
        .await
        .unwrap();
    assert_eq!(again, Default::default(), "nothing changed, nothing reported");
    let job = s.job("j").await.unwrap().unwrap();
    assert_eq!((job.processed_images, job.failed_images, job.status), (1, 0, JobStatus::Running));
    assert_eq!(s.apply_events(&[]).await.unwrap(), Default::default());
    assert_eq!(s.failed_image_count().await.unwrap(), 0, "the late failure was not recorded");

    // Finishing everything, twice over, never passes the total.
    let all: Vec<_> = (0..3).map(|n| indexed("j", n)).collect();
    s.apply_events(&all).await.unwrap();
    s.apply_events(&all).await.unwrap();
    let job = s.job("j").await.unwrap().unwrap();
    assert_eq!((job.processed_images, job.failed_images, job.status), (3, 0, JobStatus::Completed));
}

async fn a_job_with_nothing_indexed_fails_with_a_summary(h: &Harness) {
    let s = h.store();
    s.create_job("bad", Priority::Low, &items(0..3)).await.unwrap();
    s.apply_events(&[failed("bad", 0, FailureKind::NotFound, "no such file")]).await.unwrap();
    let changed = s
        .apply_events(&[
            failed("bad", 1, FailureKind::NotAnImage, "unknown format"),
            failed("bad", 2, FailureKind::NotFound, "no such file"),
        ])
        .await
        .unwrap();
    let job = &changed.jobs[0];
    assert_eq!((job.status, job.processed_images, job.failed_images), (JobStatus::Failed, 0, 3));
    assert!(job.completed_at.is_some());
    assert_eq!(
        job.error_message.as_deref(),
        Some("all 3 images failed: 2 not_found, 1 not_an_image (e.g. /images/0.jpg: no such file)")
    );
    assert_eq!(job.percent_complete(), 100.0);
    assert_eq!(s.job("bad").await.unwrap().as_ref(), Some(job));
    assert!(s.active_jobs().await.unwrap().is_empty());

    // A single failing image, with a reason longer than the store keeps.
    s.create_job("one", Priority::Low, &[item(7)]).await.unwrap();
    let long = "x".repeat(5000);
    let changed = s.apply_events(&[failed("one", 7, FailureKind::TooLarge, &long)]).await.unwrap().jobs;
    let message = changed[0].error_message.clone().unwrap();
    assert!(message.starts_with("the only image failed: too_large (/images/7.jpg: xxx"), "{message}");
    assert!(message.len() < 400, "the example reason is cut short: {}", message.len());
}

async fn claims_are_released_when_items_finish_or_jobs_fail(h: &Harness) {
    let s = h.store();
    s.create_job("a", Priority::Normal, &items(0..3)).await.unwrap();
    s.apply_events(&[indexed("a", 0)]).await.unwrap();
    assert_eq!(h.claims_of("a").await, points(1..3));
    // The finished point can be queued again while the others stay claimed.
    assert_eq!(s.create_job("b", Priority::Normal, &items(0..3)).await.unwrap(), vec![item(0)]);

    s.fail_job("a", "could not queue tasks").await.unwrap();
    let a = s.job("a").await.unwrap().unwrap();
    assert_eq!((a.status, a.error_message.as_deref()), (JobStatus::Failed, Some("could not queue tasks")));
    assert!(a.completed_at.is_some());
    assert_eq!((a.processed_images, a.failed_images), (1, 0), "counters untouched");
    assert!(h.claims_of("a").await.is_empty());
    assert_eq!(s.create_job("c", Priority::Normal, &items(0..3)).await.unwrap(), vec![item(1), item(2)]);

    // A late event for the failed job records the item but not the finished job's
    // progress, and leaves job c's claim alone.
    assert!(s.apply_events(&[indexed("a", 1)]).await.unwrap().jobs.is_empty());
    assert_eq!(s.job("a").await.unwrap().unwrap(), a);
    assert_eq!(h.claims_of("c").await, points(1..3));

    // Failing twice, or an unknown job, is harmless.
    s.fail_job("a", "again").await.unwrap();
    assert_eq!(s.job("a").await.unwrap().unwrap().error_message.as_deref(), Some("could not queue tasks"));
    s.fail_job("missing", "x").await.unwrap();
    assert!(s.job("missing").await.unwrap().is_none());
}

async fn active_and_recent_jobs_are_ordered(h: &Harness) {
    let s = h.store();
    for (k, job_id) in ["first", "second", "third", "fourth"].iter().enumerate() {
        s.create_job(job_id, Priority::Normal, &[item(k as u128)]).await.unwrap();
    }
    s.apply_events(&[indexed("third", 2)]).await.unwrap();
    s.fail_job("first", "broken").await.unwrap();
    s.apply_events(&[failed("fourth", 3, FailureKind::TooLarge, "huge")]).await.unwrap();

    let active: Vec<_> = s.active_jobs().await.unwrap().into_iter().map(|j| j.job_id).collect();
    assert_eq!(active, vec!["second"]);
    let recent: Vec<_> = s.recent_jobs(10).await.unwrap().into_iter().map(|j| j.job_id).collect();
    assert_eq!(recent, vec!["fourth", "first", "third"], "newest completion first");
    let recent: Vec<_> = s.recent_jobs(2).await.unwrap().into_iter().map(|j| j.job_id).collect();
    assert_eq!(recent, vec!["fourth", "first"]);
    assert!(s.recent_jobs(0).await.unwrap().is_empty());

    s.create_job("fifth", Priority::High, &[item(10)]).await.unwrap();
    s.apply_events(&[indexed("fifth", 10)]).await.unwrap(); // finished, not active
    s.create_job("sixth", Priority::Low, &[item(11), item(12)]).await.unwrap();
    s.apply_events(&[indexed("sixth", 11)]).await.unwrap(); // running
    let active: Vec<_> = s.active_jobs().await.unwrap().into_iter().map(|j| (j.job_id, j.status)).collect();
    assert_eq!(active, vec![("second".to_string(), JobStatus::Queued), ("sixth".to_string(), JobStatus::Running)]);
}

async fn failed_images_count_only_when_their_latest_attempt_failed(h: &Harness) {
    let s = h.store();
    assert_eq!(s.failed_image_count().await.unwrap(), 0);
    assert_eq!(s.last_update().await.unwrap(), None);
    s.create_job("a", Priority::Normal, &items(0..3)).await.unwrap();
    s.apply_events(&[
        failed("a", 0, FailureKind::Unreadable, "io"),
        failed("a", 1, FailureKind::NotFound, "gone"),
        indexed("a", 2),
    ])
    .await
    .unwrap();
    assert_eq!(s.failed_image_count().await.unwrap(), 2);

    // Point 0 succeeds on a retry; point 2 fails after having succeeded.
    s.create_job("b", Priority::Normal, &[item(0), item(2)]).await.unwrap();
    s.apply_events(&[indexed("b", 0), failed("b", 2, FailureKind::NotFound, "deleted")]).await.unwrap();
    assert_eq!(s.failed_image_count().await.unwrap(), 2, "points 1 and 2");
    let b = s.job("b").await.unwrap().unwrap();
    assert_eq!(s.last_update().await.unwrap(), b.completed_at);

    // Within one batch, two jobs finishing the same point differently: the success wins.
    s.create_job("c", Priority::Normal, &[item(1)]).await.unwrap();
    s.fail_job("c", "tasks lost").await.unwrap();
    s.create_job("d", Priority::Normal, &[item(1)]).await.unwrap();
    s.apply_events(&[failed("c", 1, FailureKind::NotFound, "gone"), indexed("d", 1)]).await.unwrap();
    assert_eq!(s.failed_image_count().await.unwrap(), 1, "point 2 only");
}

async fn concurrent_aggregators_count_each_item_once(h: &Harness) {
    let store = h.shared();
    for k in 0..4u128 {
        store.create_job(&format!("j{k}"), Priority::Normal, &items(k * 100..k * 100 + 100)).await.unwrap();
    }
    // Every aggregator gets every event for all jobs, in a different order: only
    // one application of each may count.
    let tasks: Vec<_> = (0..4)
        .map(|a| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut events: Vec<_> = (0..400u128).map(|n| indexed(&format!("j{}", n / 100), n)).collect();
                events.rotate_left(a * 97);
                for batch in events.chunks(37) {
                    store.apply_events(batch).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for k in 0..4 {
        let job = store.job(&format!("j{k}")).await.unwrap().unwrap();
        assert_eq!((job.status, job.processed_images, job.failed_images), (JobStatus::Completed, 100, 0));
    }
    assert!(h.claims().await.is_empty());
}

async fn requeue_returns_pending_items_of_active_jobs(h: &Harness) {
    let s = h.store();
    let before_any = Utc::now() - Duration::seconds(1);
    let unstamped = NewItem { stamp: None, ..item(0) };
    // a: running, items 0 and 2 pending (0 without a file stamp), 1 finished.
    s.create_job("a", Priority::High, &[item(2), unstamped.clone(), item(1)]).await.unwrap();
    s.apply_events(&[indexed("a", 1)]).await.unwrap();
    // b: queued.
    s.create_job("b", Priority::Low, &items(3..5)).await.unwrap();
    // c: failed with items still pending; d: completed.
    s.create_job("c", Priority::Normal, &items(5..7)).await.unwrap();
    s.fail_job("c", "tasks lost").await.unwrap();
    s.create_job("d", Priority::Normal, &items(7..8)).await.unwrap();
    s.apply_events(&[indexed("d", 7)]).await.unwrap();

    assert!(s.requeue_stale_items(before_any, 100).await.unwrap().is_empty(), "queued after that cutoff");
    let cutoff = Utc::now();
    let expected = vec![
        requeued("a", Priority::High, unstamped.clone()),
        requeued("a", Priority::High, item(2)),
        requeued("b", Priority::Low, item(3)),
        requeued("b", Priority::Low, item(4)),
    ];
    assert_eq!(s.requeue_stale_items(cutoff, 100).await.unwrap(), expected);
    assert!(s.requeue_stale_items(cutoff, 100).await.unwrap().is_empty(), "stamped as queued after the cutoff");

    // Stale again later; an item finished meanwhile is not.
    s.apply_events(&[indexed("b", 3)]).await.unwrap();
    let later = Utc::now() + Duration::seconds(1);
    let again = s.requeue_stale_items(later, 100).await.unwrap();
    assert_eq!(again, vec![expected[0].clone(), expected[1].clone(), expected[3].clone()]);
    assert!(s.requeue_stale_items(later, 100).await.unwrap().is_empty());

    // Requeueing touched neither the jobs nor the claims.
    let a = s.job("a").await.unwrap().unwrap();
    assert_eq!((a.status, a.processed_images, a.total_images), (JobStatus::Running, 1, 3));
    assert_eq!(h.claims_of("a").await, vec![Uuid::from_u128(0), Uuid::from_u128(2)]);
}

async fn requeue_honours_the_limit_oldest_job_first(h: &Harness) {
    let s = h.store();
    // The older job holds the larger point ids: order is by job age, then point.
    s.create_job("old", Priority::Low, &items(10..13)).await.unwrap();
    s.create_job("new", Priority::High, &items(0..3)).await.unwrap();
    let cutoff = Utc::now();
    assert!(s.requeue_stale_items(cutoff, 0).await.unwrap().is_empty());
    let mut pages = Vec::new();
    loop {
        let page = s.requeue_stale_items(cutoff, 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        pages.push(page.into_iter().map(|r| (r.job_id, r.item.point_id)).collect::<Vec<_>>());
        assert!(pages.len() <= 3, "paging with one cutoff ends");
    }
    let expect = |job: &str, n: u128| (job.to_string(), Uuid::from_u128(n));
    assert_eq!(
        pages,
        vec![
            vec![expect("old", 10), expect("old", 11)],
            vec![expect("old", 12), expect("new", 0)],
            vec![expect("new", 1), expect("new", 2)],
        ]
    );
}

async fn concurrent_requeues_never_take_the_same_item(h: &Harness) {
    let store = h.shared();
    store.create_job("j", Priority::Normal, &items(0..300)).await.unwrap();
    let cutoff = Utc::now();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut taken = Vec::new();
                loop {
                    let page = store.requeue_stale_items(cutoff, 7).await.unwrap();
                    if page.is_empty() {
                        return taken;
                    }
                    taken.extend(page.into_iter().map(|r| r.item.point_id));
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in tasks {
        for point in t.await.unwrap() {
            assert!(seen.insert(point), "{point} requeued twice");
        }
    }
    assert_eq!(seen.len(), 300);
}

/// Every item of `job_id` in `state`, `limit` at a time; also returns the page count.
async fn all_pages(s: &dyn JobStore, job_id: &str, state: Option<ItemState>, limit: usize) -> (Vec<Uuid>, usize) {
    let (mut seen, mut pages, mut after) = (Vec::new(), 0, None);
    loop {
        let ItemPage { items, next_after } = s.job_items(job_id, state, after, limit).await.unwrap();
        assert!(items.len() <= limit);
        pages += 1;
        assert!(pages <= 1000, "paging ends");
        seen.extend(items.iter().map(|i| i.point_id));
        match next_after {
            Some(next) => {
                assert_eq!(Some(next), items.last().map(|i| i.point_id), "a page continues after its last item");
                after = Some(next);
            }
            None => return (seen, pages),
        }
    }
}

async fn items_are_listed_by_state_with_their_outcome(h: &Harness) {
    let s = h.store();
    // Input order is not point order: listings are by point.
    s.create_job("j", Priority::Normal, &[item(4), item(2), item(0), item(3), item(1)]).await.unwrap();
    s.apply_events(&[
        failed("j", 3, FailureKind::NotFound, "no such file"),
        indexed("j", 2),
        failed("j", 0, FailureKind::NotAnImage, "unknown format"),
    ])
    .await
    .unwrap();
    let job = s.job("j").await.unwrap().unwrap();

    let all = s.job_items("j", None, None, 100).await.unwrap();
    assert_eq!(all.next_after, None, "everything fit in one page");
    let listed: Vec<(Uuid, &str, ItemState)> = all.items.iter().map(|i| (i.point_id, i.path.as_str(), i.state)).collect();
    assert_eq!(
        listed,
        vec![
            (Uuid::from_u128(0), "/images/0.jpg", ItemState::Failed),
            (Uuid::from_u128(1), "/images/1.jpg", ItemState::Pending),
            (Uuid::from_u128(2), "/images/2.jpg", ItemState::Indexed),
            (Uuid::from_u128(3), "/images/3.jpg", ItemState::Failed),
            (Uuid::from_u128(4), "/images/4.jpg", ItemState::Pending),
        ]
    );

    let failed_items = s.job_items("j", Some(ItemState::Failed), None, 100).await.unwrap().items;
    let outcomes: Vec<_> =
        failed_items.iter().map(|i| (i.point_id, i.failure_kind.as_deref(), i.reason.as_deref())).collect();
    assert_eq!(
        outcomes,
        vec![
            (Uuid::from_u128(0), Some("not_an_image"), Some("unknown format")),
            (Uuid::from_u128(3), Some("not_found"), Some("no such file")),
        ]
    );
    for i in &failed_items {
        let at = i.finished_at.expect("a failed item has its finish time");
        assert!(at >= job.created_at && at <= Utc::now());
    }

    let indexed_items = s.job_items("j", Some(ItemState::Indexed), None, 100).await.unwrap().items;
    assert_eq!(indexed_items.len(), 1);
    let ok = &indexed_items[0];
    assert_eq!((ok.point_id, ok.failure_kind.as_deref(), ok.reason.as_deref()), (Uuid::from_u128(2), None, None));
    assert!(ok.finished_at.is_some());

    let pending = s.job_items("j", Some(ItemState::Pending), None, 100).await.unwrap().items;
    assert_eq!(pending.iter().map(|i| i.point_id).collect::<Vec<_>>(), points(1..2).into_iter().chain(points(4..5)).collect::<Vec<_>>());
    assert!(pending.iter().all(|i| i.finished_at.is_none() && i.failure_kind.is_none()));

    // Another job's items, and unknown jobs, are not listed.
    s.create_job("other", Priority::Normal, &[item(9)]).await.unwrap();
    assert_eq!(s.job_items("j", None, None, 100).await.unwrap().items.len(), 5);
    assert_eq!(s.job_items("nope", None, None, 100).await.unwrap(), ItemPage { items: vec![], next_after: None });
    assert!(s.job_items("j", None, None, 0).await.unwrap().items.is_empty());
}

async fn item_pages_lose_and_repeat_nothing(h: &Harness) {
    let s = h.store();
    s.create_job("j", Priority::Normal, &items(0..23)).await.unwrap();
    let fails: Vec<_> = (0..23).filter(|n| n % 3 == 0).map(|n| failed("j", n, FailureKind::Unreadable, "io")).collect();
    s.apply_events(&fails).await.unwrap();

    for limit in [1, 4, 7, 23, 100] {
        let (seen, pages) = all_pages(s, "j", None, limit).await;
        assert_eq!(seen, points(0..23), "limit {limit}: every item once, in order");
        assert_eq!(pages, 23usize.div_ceil(limit), "limit {limit}: no empty last page");
        let (seen, _) = all_pages(s, "j", Some(ItemState::Failed), limit).await;
        assert_eq!(seen, (0..23).filter(|n| n % 3 == 0).map(Uuid::from_u128).collect::<Vec<_>>(), "limit {limit}");
    }

    // Items that finish between two pages neither repeat nor vanish from an
    // unfiltered listing.
    let first = s.job_items("j", None, None, 10).await.unwrap();
    let done: Vec<_> = (1..23).filter(|n| n % 3 != 0).map(|n| indexed("j", n)).collect();
    s.apply_events(&done).await.unwrap();
    let mut seen: Vec<Uuid> = first.items.iter().map(|i| i.point_id).collect();
    let mut after = first.next_after;
    while let Some(a) = after {
        let page = s.job_items("j", None, Some(a), 10).await.unwrap();
        seen.extend(page.items.iter().map(|i| i.point_id));
        after = page.next_after;
    }
    assert_eq!(seen, points(0..23));
    let (pending, pages) = all_pages(s, "j", Some(ItemState::Pending), 5).await;
    assert_eq!((pending.len(), pages), (0, 1));
}

async fn failures_are_counted_by_reason(h: &Harness) {
    let s = h.store();
    s.create_job("j", Priority::Normal, &items(0..6)).await.unwrap();
    assert!(s.failures_by_reason("j").await.unwrap().is_empty(), "nothing failed yet");
    s.apply_events(&[
        failed("j", 0, FailureKind::NotFound, "gone"),
        failed("j", 1, FailureKind::NotFound, "gone"),
        failed("j", 2, FailureKind::NotAnImage, "text"),
        failed("j", 3, FailureKind::RetriesExhausted, "dead-lettered"),
        indexed("j", 4),
    ])
    .await
    .unwrap();
    let counts = s.failures_by_reason("j").await.unwrap();
    let counts: Vec<(&str, u64)> = counts.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    assert_eq!(counts, vec![("not_an_image", 1), ("not_found", 2), ("retries_exhausted", 1)]);
    assert_eq!(counts.iter().map(|c| c.1).sum::<u64>(), s.job("j").await.unwrap().unwrap().failed_images);

    // Counts are per job: a later job's outcomes for the same images leave them alone.
    s.apply_events(&[indexed("j", 5)]).await.unwrap();
    s.create_job("k", Priority::Normal, &items(0..2)).await.unwrap();
    s.apply_events(&[indexed("k", 0), failed("k", 1, FailureKind::TooLarge, "huge")]).await.unwrap();
    assert_eq!(s.failures_by_reason("j").await.unwrap().get("not_found"), Some(&2));
    let k = s.failures_by_reason("k").await.unwrap();
    assert_eq!((k.len(), k.get("too_large")), (1, Some(&1)));
    assert!(s.failures_by_reason("nope").await.unwrap().is_empty());
}

async fn retry_candidates_leave_out_images_indexed_since(h: &Harness) {
    let s = h.store();
    s.create_job("clean", Priority::Normal, &[item(20)]).await.unwrap();
    s.apply_events(&[indexed("clean", 20)]).await.unwrap();
    assert_eq!(s.retry_candidates("clean").await.unwrap(), RetryCandidates::default(), "nothing failed");

    let unstamped = NewItem { stamp: None, ..item(3) };
    s.create_job("a", Priority::High, &[item(0), item(1), item(2), unstamped.clone(), item(4)]).await.unwrap();
    s.apply_events(&[
        failed("a", 0, FailureKind::NotFound, "gone"),
        failed("a", 1, FailureKind::NotAnImage, "text"),
        failed("a", 3, FailureKind::NotFound, "gone"),
        indexed("a", 4),
        indexed("a", 2),
    ])
    .await
    .unwrap();
    assert_eq!(s.job("a").await.unwrap().unwrap().status, JobStatus::Completed);
    let c = s.retry_candidates("a").await.unwrap();
    assert_eq!((c.items, c.indexed_since), (vec![item(0), item(1), unstamped.clone()], 0), "with their stamps");

    // Point 1 is indexed by a later job; point 0 fails again there (still a candidate).
    s.create_job("b", Priority::Normal, &[item(0), item(1)]).await.unwrap();
    s.apply_events(&[failed("b", 0, FailureKind::NotFound, "gone"), indexed("b", 1)]).await.unwrap();
    let c = s.retry_candidates("a").await.unwrap();
    assert_eq!((c.items, c.indexed_since), (vec![item(0), unstamped.clone()], 1));
    let c = s.retry_candidates("b").await.unwrap();
    assert_eq!((c.items, c.indexed_since), (vec![item(0)], 0));

    // Creating the retry job claims what no active job holds: point 3 is queued
    // elsewhere meanwhile, so only point 0 is claimed.
    s.create_job("c", Priority::Low, std::slice::from_ref(&unstamped)).await.unwrap();
    let candidates = s.retry_candidates("a").await.unwrap().items;
    assert_eq!(s.create_job("retry", Priority::High, &candidates).await.unwrap(), vec![item(0)]);
    assert!(s.retry_candidates("nope").await.unwrap().items.is_empty());

    // A job failed before its tasks were queued left its items pending: they are
    // candidates too, unless indexed since.
    s.create_job("lost", Priority::Normal, &items(10..13)).await.unwrap();
    s.fail_job("lost", "could not queue").await.unwrap();
    s.create_job("later", Priority::Normal, &[item(11)]).await.unwrap();
    s.apply_events(&[indexed("later", 11)]).await.unwrap();
    let c = s.retry_candidates("lost").await.unwrap();
    assert_eq!((c.items, c.indexed_since), (vec![item(10), item(12)], 1));
}

fn key(job_id: &str, n: u128) -> ItemKey {
    ItemKey { job_id: job_id.into(), point_id: Uuid::from_u128(n) }
}

async fn attempts_are_counted_on_pending_items_only(h: &Harness) {
    use AttemptCount::{Earlier, NotPending, Started};
    let s = h.store();
    s.create_job("j", Priority::Normal, &items(0..4)).await.unwrap();
    s.apply_events(&[indexed("j", 3)]).await.unwrap();

    // A fresh batch: pending items start their first attempt, finished and unknown ones are not counted.
    let first = s.count_attempts(&[key("j", 0), key("j", 1), key("j", 3), key("other", 0)], true).await.unwrap();
    assert_eq!(first, vec![Started(1), Started(1), NotPending, NotPending]);

    // Items tried before are set aside by `first_only` (not counted), and counted when tried alone.
    let again = s.count_attempts(&[key("j", 0), key("j", 2)], true).await.unwrap();
    assert_eq!(again, vec![Earlier(1), Started(1)]);
    assert_eq!(s.count_attempts(&[key("j", 0)], false).await.unwrap(), vec![Started(2)]);
    assert_eq!(s.count_attempts(&[key("j", 0)], true).await.unwrap(), vec![Earlier(2)]);
    // A key listed twice counts once.
    assert_eq!(s.count_attempts(&[key("j", 1), key("j", 1)], false).await.unwrap(), vec![Started(2), Started(2)]);
    assert_eq!(s.count_attempts(&[], false).await.unwrap(), vec![]);

    // The items listing shows them; a finished item keeps its count.
    s.apply_events(&[failed("j", 0, FailureKind::RetriesExhausted, "gave up")]).await.unwrap();
    assert_eq!(s.count_attempts(&[key("j", 0)], false).await.unwrap(), vec![NotPending]);
    let listed: Vec<(u128, u32)> =
        s.job_items("j", None, None, 10).await.unwrap().items.iter().map(|i| (i.point_id.as_u128(), i.attempts)).collect();
    assert_eq!(listed, vec![(0, 2), (1, 2), (2, 1), (3, 0)]);
}

async fn unpublished_jobs_are_listed_until_marked(h: &Harness) {
    let s = h.store();
    let before_any = Utc::now() - Duration::seconds(1);
    let unstamped = NewItem { stamp: None, ..item(0) };
    // a: running, 0 and 2 pending; b: queued; c: failed; d: published.
    s.create_job("a", Priority::High, &[item(2), unstamped.clone(), item(1)]).await.unwrap();
    s.apply_events(&[indexed("a", 1)]).await.unwrap();
    s.create_job("b", Priority::Low, &items(3..5)).await.unwrap();
    s.create_job("c", Priority::Normal, &items(5..7)).await.unwrap();
    s.fail_job("c", "tasks lost").await.unwrap();
    s.create_job("d", Priority::Normal, &items(7..9)).await.unwrap();
    s.mark_published(&["d".to_string()]).await.unwrap();
    let cutoff = Utc::now();
    // Created after the cutoff: still within its grace period.
    s.create_job("e", Priority::Normal, &items(9..10)).await.unwrap();

    assert!(s.unpublished_items(before_any, None, 100).await.unwrap().is_empty(), "created after that cutoff");
    let expected = vec![
        requeued("a", Priority::High, unstamped),
        requeued("a", Priority::High, item(2)),
        requeued("b", Priority::Low, item(3)),
        requeued("b", Priority::Low, item(4)),
    ];
    assert_eq!(s.unpublished_items(cutoff, None, 100).await.unwrap(), expected);
    // Reads only: the same again, and in keyset pages.
    let first = s.unpublished_items(cutoff, None, 3).await.unwrap();
    assert_eq!(first, expected[..3]);
    assert_eq!(s.unpublished_items(cutoff, Some(&key("b", 3)), 3).await.unwrap(), expected[3..]);
    assert!(s.unpublished_items(cutoff, None, 0).await.unwrap().is_empty());

    // Marked jobs are gone; marking twice, or an unknown job, changes nothing else.
    s.mark_published(&["a".to_string(), "nope".to_string()]).await.unwrap();
    s.mark_published(&["a".to_string()]).await.unwrap();
    s.mark_published(&[]).await.unwrap();
    assert_eq!(s.unpublished_items(cutoff, None, 100).await.unwrap(), expected[2..]);
    let later = Utc::now() + Duration::seconds(1);
    let left: Vec<String> = s.unpublished_items(later, None, 100).await.unwrap().into_iter().map(|r| r.job_id).collect();
    assert_eq!(left, vec!["b", "b", "e"]);
    let a = s.job("a").await.unwrap().unwrap();
    assert_eq!((a.status, a.processed_images), (JobStatus::Running, 1), "marking leaves progress alone");
}

fn ids(page: &super::JobPage) -> Vec<&str> {
    page.jobs.iter().map(|j| j.job_id.as_str()).collect()
}

async fn jobs_are_listed_newest_first_by_status_and_priority(h: &Harness) {
    let s = h.store();
    s.create_job("a", Priority::Low, &items(0..2)).await.unwrap();
    s.create_job("b", Priority::High, &items(2..4)).await.unwrap();
    s.create_job("c", Priority::Normal, &items(4..6)).await.unwrap();
    s.fail_job("c", "could not queue").await.unwrap();

    let first = s.list_jobs(&JobQuery { limit: 2, ..Default::default() }).await.unwrap();
    assert_eq!((ids(&first), first.total), (vec!["c", "b"], 3));
    let second = s.list_jobs(&JobQuery { limit: 2, after: first.next.clone(), ..Default::default() }).await.unwrap();
    assert_eq!((ids(&second), second.total, second.next.is_none()), (vec!["a"], 3, true));

    let queued = s.list_jobs(&JobQuery { status: Some(JobStatus::Queued), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!((ids(&queued), queued.total), (vec!["b", "a"], 2));
    let high = s.list_jobs(&JobQuery { priority: Some(Priority::High), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(ids(&high), vec!["b"]);
    let query = JobQuery { status: Some(JobStatus::Failed), priority: Some(Priority::Low), limit: 10, ..Default::default() };
    let failed_low = s.list_jobs(&query).await.unwrap();
    assert_eq!((failed_low.jobs.len(), failed_low.total), (0, 0));
    let none = s.list_jobs(&JobQuery { limit: 0, ..Default::default() }).await.unwrap();
    assert_eq!((none.jobs.len(), none.total), (0, 3), "a count alone");
}

async fn cancelling_a_job_withdraws_its_pending_items(h: &Harness) {
    let s = h.store();
    s.create_job("j", Priority::Normal, &items(0..4)).await.unwrap();
    s.apply_events(&[indexed("j", 0)]).await.unwrap();
    // Item 1 is in a worker's batch already when the cancel comes.
    assert_eq!(s.count_attempts(&[key("j", 1)], true).await.unwrap(), vec![AttemptCount::Started(1)]);

    let CancelOutcome::Cancelled(job) = s.cancel_job("j").await.unwrap() else { panic!("not cancelled") };
    assert_eq!((job.status, job.processed_images, job.total_images), (JobStatus::Cancelled, 1, 4));
    assert!(job.completed_at.is_some());
    assert!(h.claims_of("j").await.is_empty(), "claims released");
    // Workers meeting its other tasks do no work and count nothing.
    let met = s.count_attempts(&[key("j", 2), key("j", 3)], true).await.unwrap();
    assert_eq!(met, vec![AttemptCount::Withdrawn, AttemptCount::Withdrawn]);
    assert!(s.requeue_stale_items(Utc::now() + Duration::seconds(1), 10).await.unwrap().is_empty());
    assert!(s.unpublished_items(Utc::now() + Duration::seconds(1), None, 10).await.unwrap().is_empty());
    assert!(s.active_jobs().await.unwrap().is_empty());
    assert_eq!(s.recent_jobs(10).await.unwrap()[0].job_id, "j");

    // The batch past the check finishes: it counts, and the job stays cancelled.
    let after = s.apply_events(&[indexed("j", 1)]).await.unwrap().jobs;
    assert_eq!((after[0].status, after[0].processed_images), (JobStatus::Cancelled, 2));
    let again = s.cancel_job("j").await.unwrap();
    assert!(matches!(again, CancelOutcome::AlreadyFinished(ref j) if j.status == JobStatus::Cancelled), "{again:?}");
    assert_eq!(s.cancel_job("nope").await.unwrap(), CancelOutcome::Unknown);
    // Another job may queue its images now; a retry would queue the ones never embedded.
    assert_eq!(s.create_job("k", Priority::Normal, &[item(3)]).await.unwrap().len(), 1);
    assert_eq!(s.retry_candidates("j").await.unwrap().items, vec![item(2), item(3)]);
}

async fn finished_jobs_are_purged(h: &Harness) {
    let s = h.store();
    s.create_job("done", Priority::Normal, &items(0..2)).await.unwrap();
    s.apply_events(&[indexed("done", 0), indexed("done", 1)]).await.unwrap();
    s.create_job("gone", Priority::Normal, &items(2..3)).await.unwrap();
    s.cancel_job("gone").await.unwrap();
    s.create_job("busy", Priority::Normal, &items(3..4)).await.unwrap();
    let before_any = Utc::now() - Duration::seconds(60);
    assert_eq!(s.purge_finished(before_any, 10).await.unwrap(), 0, "finished after that");
    let cutoff = Utc::now() + Duration::seconds(1);
    assert_eq!(s.purge_finished(cutoff, 1).await.unwrap(), 1, "the limit holds");
    assert_eq!(s.purge_finished(cutoff, 10).await.unwrap(), 1);
    assert_eq!(s.purge_finished(cutoff, 10).await.unwrap(), 0);
    assert!(s.job("done").await.unwrap().is_none() && s.job("gone").await.unwrap().is_none());
    assert!(s.job_items("done", None, None, 10).await.unwrap().items.is_empty(), "items go with their job");
    assert_eq!(s.job("busy").await.unwrap().unwrap().status, JobStatus::Queued, "active jobs stay");
    // What the images' outcomes say stays: they describe the images, not the jobs.
    assert!(s.last_update().await.unwrap().is_some());
}

async fn workers_are_counted_per_job(h: &Harness) {
    let s = h.store();
    s.create_job("j", Priority::Normal, &items(0..4)).await.unwrap();
    s.create_job("k", Priority::Normal, &items(4..5)).await.unwrap();
    let by = |e: CompletionEvent, worker: &str| CompletionEvent { worker: worker.into(), ..e };
    let started = Utc::now() - Duration::seconds(1);
    s.apply_events(&[
        by(indexed("j", 0), "w1"),
        by(failed("j", 1, FailureKind::NotFound, "gone"), "w1"),
        by(indexed("j", 2), "w2"),
        by(indexed("k", 4), "w2"),
    ])
    .await
    .unwrap();
    // A duplicate from another worker counts for nobody.
    s.apply_events(&[by(indexed("j", 0), "w2"), by(indexed("j", 3), "w2")]).await.unwrap();
    let workers = s.job_workers("j").await.unwrap();
    let got: Vec<(&str, u64, u64)> =
        workers.iter().map(|w| (w.worker_id.as_str(), w.images_processed, w.images_failed)).collect();
    assert_eq!(got, vec![("w1", 1, 1), ("w2", 2, 0)]);
    assert!(workers.iter().all(|w| w.last_seen_at > started && w.last_seen_at < Utc::now() + Duration::seconds(1)));
    assert_eq!(s.job_workers("k").await.unwrap().len(), 1);
    assert!(s.job_workers("nope").await.unwrap().is_empty());
    // The system's recent throughput counts each image's latest outcome.
    assert_eq!(s.finished_since(started).await.unwrap(), 5);
    assert_eq!(s.finished_since(Utc::now() + Duration::seconds(1)).await.unwrap(), 0);
    // They go with their job.
    s.purge_finished(Utc::now() + Duration::seconds(1), 10).await.unwrap();
    assert!(s.job_workers("j").await.unwrap().is_empty());
}
