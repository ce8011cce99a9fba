//! SQLite specifics: the file, its settings, durability across reopening, and two
//! stores on one file. What every backend must do is in `jobs/conformance.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::Utc;
use rusqlite::Connection;

use super::*;
use crate::jobs::conformance::{claim_concurrently, failed, indexed, item, items, requeued};
use crate::jobs::JobStatus;
use crate::messages::FailureKind;

#[tokio::test]
async fn data_survives_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/state/jobs.sqlite");
    let (jobs_before, failed_before, last_before) = {
        let s = SqliteJobStore::open(&path).expect("open creates the directories and the file");
        s.create_job("a", Priority::High, &items(0..3)).await.unwrap();
        s.create_job("b", Priority::Low, &items(3..5)).await.unwrap();
        s.create_job("c", Priority::Normal, &items(5..6)).await.unwrap();
        s.apply_events(&[indexed("a", 0), failed("a", 1, FailureKind::NotFound, "gone")]).await.unwrap();
        s.apply_events(&[indexed("c", 5)]).await.unwrap();
        s.fail_job("b", "could not queue tasks").await.unwrap();
        let jobs = [s.job("a").await.unwrap(), s.job("b").await.unwrap(), s.job("c").await.unwrap()];
        (jobs, s.failed_image_count().await.unwrap(), s.last_update().await.unwrap())
    };
    assert!(last_before.is_some());

    let s = SqliteJobStore::open(&path).unwrap();
    let jobs_after = [s.job("a").await.unwrap(), s.job("b").await.unwrap(), s.job("c").await.unwrap()];
    assert_eq!(jobs_after, jobs_before, "times and counters round-trip exactly");
    assert_eq!(s.failed_image_count().await.unwrap(), failed_before);
    assert_eq!(s.last_update().await.unwrap(), last_before);
    assert_eq!(s.active_jobs().await.unwrap().into_iter().map(|j| j.job_id).collect::<Vec<_>>(), vec!["a"]);
    // a's claim on point 2 survived; b's were released when it failed.
    let claimed = s.create_job("d", Priority::Normal, &items(0..5)).await.unwrap();
    assert_eq!(claimed, vec![item(0), item(1), item(3), item(4)]);
    let taken = s.requeue_stale_items(Utc::now(), 10).await.unwrap();
    assert_eq!(taken[0], requeued("a", Priority::High, item(2)));
    assert_eq!(taken.len(), 5);
    let done = s.apply_events(&[indexed("a", 2)]).await.unwrap().jobs;
    assert_eq!((done[0].status, done[0].processed_images, done[0].failed_images), (JobStatus::Completed, 2, 1));

    // Reopening applied no migration twice, and left the settings that persist.
    let conn = Connection::open(&path).unwrap();
    let applied: i64 = conn.query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0)).unwrap();
    assert_eq!(applied, schema::MIGRATIONS.len() as i64);
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn two_stores_on_one_file_claim_each_point_once() {
    // Like two processes: separate connections, so only SQLite's locking keeps them apart.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.sqlite");
    let stores: [Arc<dyn JobStore>; 2] =
        [Arc::new(SqliteJobStore::open(&path).unwrap()), Arc::new(SqliteJobStore::open(&path).unwrap())];
    let seen = claim_concurrently(&stores, 50, 150).await;
    assert_eq!(seen.len(), 7 * 50 + 150, "every point of the union claimed once");
    // Each store sees the other's work.
    let taken = stores[0].requeue_stale_items(Utc::now(), 10_000).await.unwrap();
    assert_eq!(taken.len(), seen.len());
    assert!(stores[1].requeue_stale_items(Utc::now() - chrono::Duration::seconds(60), 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn open_reports_unusable_paths() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    match SqliteJobStore::open(&file.join("jobs.sqlite")) {
        Err(JobStoreError::Unavailable(msg)) => assert!(msg.contains("a-file"), "{msg}"),
        other => panic!("expected Unavailable, got {:?}", other.err()),
    }
    let garbage = dir.path().join("garbage.sqlite");
    std::fs::write(&garbage, vec![b'x'; 4096]).unwrap();
    match SqliteJobStore::open(&garbage) {
        Err(e) => assert!(e.to_string().contains("garbage.sqlite"), "{e}"),
        Ok(_) => panic!("opened a file that is not a database"),
    }
}

#[tokio::test]
async fn a_healthy_store_answers_its_probe() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteJobStore::open(&dir.path().join("jobs.sqlite")).unwrap();
    assert!(s.healthy().await);
}

#[test]
fn the_clock_never_repeats_or_goes_back() {
    let mut clock = Clock { last: i64::MAX / 2 };
    let a = clock.now();
    let b = clock.now();
    assert_eq!((a, b), (i64::MAX / 2 + 1, i64::MAX / 2 + 2), "a clock ahead of real time still moves on");
    let mut clock = Clock::default();
    let now = Utc::now().timestamp_micros();
    assert!(clock.now() >= now);
}

#[test]
fn times_round_trip_through_microseconds() {
    let t = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
    assert_eq!(time(micros(t)).unwrap(), t);
    assert!(time(i64::MAX).is_err());
}
