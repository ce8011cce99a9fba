//! Against a real PostgreSQL: `IMGIDX_TEST_PG_URL` is an admin URL (e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test creates its own database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;

use tokio_postgres::NoTls;
use uuid::Uuid;

use super::*;
use crate::messages::FileStamp;

/// A fresh database holding a migrated store; `finish` drops it.
struct TestDb {
    admin_url: String,
    name: String,
    url: String,
    store: PostgresJobStore,
}

impl TestDb {
    async fn new() -> Option<Self> {
        let Ok(admin_url) = std::env::var("IMGIDX_TEST_PG_URL") else {
            assert!(
                std::env::var("IMGIDX_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "IMGIDX_REQUIRE_SERVICES=1 but IMGIDX_TEST_PG_URL is not set; point it at a PostgreSQL \
                 admin URL such as postgres://postgres@127.0.0.1:5432/postgres"
            );
            eprintln!("skipping PostgreSQL job store test: IMGIDX_TEST_PG_URL is not set");
            return None;
        };
        let name = format!("imgidx_test_{}", Uuid::new_v4().simple());
        let url = with_database(&admin_url, &name);
        let store = PostgresJobStore::connect(&url, 8).await.expect("connect to a fresh test database");
        Some(Self { admin_url, name, url, store })
    }

    async fn finish(self) {
        drop(self.store);
        drop_database(&self.admin_url, &self.name).await;
    }

    async fn sql(&self) -> deadpool_postgres::Client {
        self.store.client().await.unwrap()
    }
}

async fn drop_database(admin_url: &str, name: &str) {
    let (client, connection) = tokio_postgres::connect(admin_url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.unwrap();
}

/// `url` with its database path replaced by `name` (query string kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn item(n: u128) -> NewItem {
    NewItem {
        point_id: Uuid::from_u128(n),
        path: format!("/images/{n}.jpg"),
        stamp: Some(FileStamp { size: 1000 + n as u64, mtime_ns: 1_700_000_000_000_000_000 }),
    }
}

fn items(range: std::ops::Range<u128>) -> Vec<NewItem> {
    range.map(item).collect()
}

fn indexed(job_id: &str, n: u128) -> CompletionEvent {
    CompletionEvent {
        job_id: job_id.into(),
        point_id: Uuid::from_u128(n),
        path: format!("/images/{n}.jpg"),
        outcome: Outcome::Indexed,
        worker: "test".into(),
    }
}

fn failed(job_id: &str, n: u128, kind: FailureKind, reason: &str) -> CompletionEvent {
    CompletionEvent { outcome: Outcome::Failed { kind, reason: reason.into() }, ..indexed(job_id, n) }
}

async fn pending_points_of(db: &TestDb, job_id: &str) -> HashSet<Uuid> {
    db.sql()
        .await
        .query("SELECT point_id FROM pending_points WHERE job_id = $1", &[&job_id])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn database_is_swapped_in_urls() {
    assert_eq!(with_database("postgres://u:p@h:5/postgres", "x"), "postgres://u:p@h:5/x");
    assert_eq!(with_database("postgres://h/postgres?sslmode=disable", "x"), "postgres://h/x?sslmode=disable");
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}

#[tokio::test]
async fn migrations_run_once_and_connect_is_repeatable() {
    let Some(db) = TestDb::new().await else { return };
    // Several services starting at once against an existing database.
    let stores = futures::future::join_all((0..4).map(|_| PostgresJobStore::connect(&db.url, 2))).await;
    for store in stores {
        store.expect("connecting to a migrated database succeeds");
    }
    let rows = db.sql().await.query("SELECT version FROM schema_migrations", &[]).await.unwrap();
    assert_eq!(rows.len(), schema::MIGRATIONS.len());
    assert!(db.store.healthy().await);
    db.finish().await;
}

#[tokio::test]
async fn concurrent_first_connects_create_the_database_once() {
    let Some(db) = TestDb::new().await else { return };
    let other = format!("{}_b", db.name);
    let url = with_database(&db.admin_url, &other);
    let stores = futures::future::join_all((0..4).map(|_| PostgresJobStore::connect(&url, 2))).await;
    for store in &stores {
        assert!(store.as_ref().expect("every concurrent first connect succeeds").healthy().await);
    }
    drop(stores);
    drop_database(&db.admin_url, &other).await;
    db.finish().await;
}

#[tokio::test]
async fn create_job_claims_unique_points_in_input_order() {
    let Some(db) = TestDb::new().await else { return };
    let s = &db.store;
    let mut candidates = vec![item(3), item(1), item(2)];
    candidates.push(NewItem { path: "/dup/of/1.jpg".into(), ..item(1) });
    let claimed = s.create_job("a", Priority::High, &candidates).await.unwrap();
    assert_eq!(claimed, vec![item(3), item(1), item(2)], "duplicates count once, first occurrence wins");
    let job = s.job("a").await.unwrap().unwrap();
    assert_eq!((job.status, job.priority, job.total_images), (JobStatus::Queued, Priority::High, 3));
    assert_eq!((job.processed_images, job.failed_images, job.started_at, job.completed_at), (0, 0, None, None));

    // Points pending in job a are not claimed again.
    let claimed = s.create_job("b", Priority::Normal, &[item(2), item(4), item(3)]).await.unwrap();
    assert_eq!(claimed, vec![item(4)]);
    assert_eq!(s.job("b").await.unwrap().unwrap().total_images, 1);

    // Nothing claimable: no job.
    assert!(s.create_job("c", Priority::Low, &[item(1), item(4)]).await.unwrap().is_empty());
    assert!(s.job("c").await.unwrap().is_none());
    assert!(s.create_job("d", Priority::Low, &[]).await.unwrap().is_empty());
    assert!(s.job("d").await.unwrap().is_none());

    let stored = db
        .sql()
        .await
        .query_one(
            "SELECT path, size, mtime_ns, state FROM job_items WHERE job_id = 'a' AND point_id = $1",
            &[&Uuid::from_u128(1)],
        )
        .await
        .unwrap();
    assert_eq!(stored.get::<_, String>(0), "/images/1.jpg");
    assert_eq!(stored.get::<_, Option<i64>>(1), Some(1001));
    assert_eq!(stored.get::<_, Option<i64>>(2), Some(1_700_000_000_000_000_000));
    assert_eq!(stored.get::<_, String>(3), "pending");
    db.finish().await;
}

#[tokio::test]
async fn large_requests_are_claimed_in_one_go() {
    let Some(db) = TestDb::new().await else { return };
    let mut many = items(0..10_000);
    many[5].stamp = None;
    let claimed = db.store.create_job("big", Priority::Normal, &many).await.unwrap();
    assert_eq!(claimed, many);
    assert_eq!(db.store.job("big").await.unwrap().unwrap().total_images, 10_000);
    db.finish().await;
}

#[tokio::test]
async fn concurrent_jobs_never_claim_the_same_point() {
    let Some(db) = TestDb::new().await else { return };
    let store = Arc::new(db.store.clone());
    // Overlapping windows over 0..400, each in a different order.
    let tasks: Vec<_> = (0..8u128)
        .map(|k| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut candidates = items(k * 40..k * 40 + 120);
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
            assert_eq!(store.job(&job_id).await.unwrap().unwrap().total_images, claimed.len() as u64);
        }
    }
    assert_eq!(seen.len(), 7 * 40 + 120, "every point of the union claimed once");
    db.finish().await;
}

#[tokio::test]
async fn events_move_a_job_through_its_states() {
    let Some(db) = TestDb::new().await else { return };
    let s = &db.store;
    s.create_job("j", Priority::Normal, &items(0..4)).await.unwrap();
    let created = s.job("j").await.unwrap().unwrap();
    assert_eq!(created.percent_complete(), 0.0);

    let changed = s.apply_events(&[indexed("j", 0)]).await.unwrap();
    assert_eq!(changed.len(), 1);
    let running = &changed[0];
    assert_eq!((running.status, running.processed_images, running.failed_images), (JobStatus::Running, 1, 0));
    let started = running.started_at.expect("started_at set on the first event");
    assert!(started >= created.created_at);
    assert_eq!(running.completed_at, None);
    assert_eq!(running.percent_complete(), 25.0);

    let changed =
        s.apply_events(&[failed("j", 1, FailureKind::NotFound, "no such file"), indexed("j", 2)]).await.unwrap();
    assert_eq!((changed[0].processed_images, changed[0].failed_images), (2, 1));
    assert_eq!(changed[0].started_at, Some(started), "started_at is kept");
    assert_eq!(changed[0].percent_complete(), 75.0);

    let changed = s.apply_events(&[indexed("j", 3)]).await.unwrap();
    let done = &changed[0];
    assert_eq!((done.status, done.processed_images, done.failed_images), (JobStatus::Completed, 3, 1));
    assert!(done.completed_at.unwrap() >= started);
    assert_eq!(done.error_message, None);
    assert_eq!(done.percent_complete(), 100.0);
    assert_eq!(s.job("j").await.unwrap().as_ref(), Some(done));
    assert!(s.active_jobs().await.unwrap().is_empty());
    assert_eq!(s.last_update().await.unwrap(), done.completed_at);
    db.finish().await;
}

#[tokio::test]
async fn duplicate_and_unknown_events_change_nothing() {
    let Some(db) = TestDb::new().await else { return };
    let s = &db.store;
    s.create_job("j", Priority::Normal, &items(0..3)).await.unwrap();
    // A duplicate inside one batch and across batches, and a late contradicting event.
    let changed = s.apply_events(&[indexed("j", 0), indexed("j", 0)]).await.unwrap();
    assert_eq!(changed[0].processed_images, 1);
    let again = s
        .apply_events(&[
            indexed("j", 0),
            failed("j", 0, FailureKind::Unreadable, "late"),
            indexed("nope", 1),
            indexed("j", 99),
        ])
        .await
        .unwrap();
    assert!(again.is_empty(), "nothing changed, nothing reported");
    let job = s.job("j").await.unwrap().unwrap();
    assert_eq!((job.processed_images, job.failed_images, job.status), (1, 0, JobStatus::Running));
    assert!(s.apply_events(&[]).await.unwrap().is_empty());

    // Finishing everything, twice over, never passes the total.
    let all: Vec<_> = (0..3).map(|n| indexed("j", n)).collect();
    s.apply_events(&all).await.unwrap();
    s.apply_events(&all).await.unwrap();
    let job = s.job("j").await.unwrap().unwrap();
    assert_eq!((job.processed_images, job.failed_images, job.status), (3, 0, JobStatus::Completed));
    db.finish().await;
}

#[tokio::test]
async fn a_job_with_nothing_indexed_fails_with_a_summary() {
    let Some(db) = TestDb::new().await else { return };
    let s = &db.store;
    s.create_job("bad", Priority::Low, &items(0..3)).await.unwrap();
    s.apply_events(&[failed("bad", 0, FailureKind::NotFound, "no such file")]).await.unwrap();
    let changed = s
        .apply_events(&[
            failed("bad", 1, FailureKind::NotAnImage, "unknown format"),
            failed("bad", 2, FailureKind::NotFound, "no such file"),
        ])
        .await
        .unwrap();
    let job = &changed[0];
    assert_eq!((job.status, job.processed_images, job.failed_images), (JobStatus::Failed, 0, 3));
    assert!(job.completed_at.is_some());
    assert_eq!(
        job.error_message.as_deref(),
        Some("all 3 images failed: not_found ×2, not_an_image ×1 (e.g. /images/0.jpg: no such file)")
    );
    assert_eq!(job.percent_complete(), 100.0);
    db.finish().await;
}

#[tokio::test]
async fn claims_are_released_when_items_finish_or_jobs_fail() {
    let Some(db) = TestDb::new().await else { return };
    let s = &db.store;
    s.create_job("a", Priority::Normal, &items(0..3)).await.unwrap();
    s.apply_events(&[indexed("a", 0)]).await.unwrap();
    assert_eq!(pending_points_of(&db, "a").await, (1..3).map(Uuid::from_u128).collect());
    // The finished point can be queued again while the others stay claimed.
    assert_eq!(s.create_job("b", Priority::Normal, &items(0..3)).await.unwrap(), vec![item(0)]);

    s.fail_job("a", "could not queue tasks").await.unwrap();
    let a = s.job("a").await.unwrap().unwrap();
    assert_eq!((a.status, a.error_message.as_deref()), (JobStatus::Failed, Some("could not queue tasks")));
    assert!(a.completed_at.is_some());
    assert_eq!((a.processed_images, a.failed_images), (1, 0), "counters untouched");
    assert!(pending_points_of(&db, "a").await.is_empty());
    assert_eq!(s.create_job("c", Priority::Normal, &items(0..3)).await.unwrap(), vec![item(1), item(2)]);

    // A late event for the failed job records the item but not the finished job's
    // progress, and leaves job c's claim alone.
    assert!(s.apply_events(&[indexed("a", 1)]).await.unwrap().is_empty());
    assert_eq!(s.job("a").await.unwrap().unwrap(), a);
    assert_eq!(pending_points_of(&db, "c").await, (1..3).map(Uuid::from_u128).collect());

    // Failing twice, or an unknown job, is harmless.
    s.fail_job("a", "again").await.unwrap();
    assert_eq!(s.job("a").await.unwrap().unwrap().error_message.as_deref(), Some("could not queue tasks"));
    s.fail_job("missing", "x").await.unwrap();
    db.finish().await;
}

#[tokio::test]
async fn active_and_recent_jobs_are_ordered() {
    let Some(db) = TestDb::new().await else { return };
    let s = &db.store;
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

    s.create_job("fifth", Priority::High, &[item(10)]).await.unwrap();
    s.apply_events(&[indexed("fifth", 10)]).await.unwrap(); // finished, not active
    s.create_job("sixth", Priority::Low, &[item(11), item(12)]).await.unwrap();
    s.apply_events(&[indexed("sixth", 11)]).await.unwrap(); // running
    let active: Vec<_> = s.active_jobs().await.unwrap().into_iter().map(|j| (j.job_id, j.status)).collect();
    assert_eq!(active, vec![("second".to_string(), JobStatus::Queued), ("sixth".to_string(), JobStatus::Running)]);
    db.finish().await;
}

#[tokio::test]
async fn failed_images_count_only_when_their_latest_attempt_failed() {
    let Some(db) = TestDb::new().await else { return };
    let s = &db.store;
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
    db.finish().await;
}

#[tokio::test]
async fn concurrent_aggregators_count_each_item_once() {
    let Some(db) = TestDb::new().await else { return };
    let store = Arc::new(db.store.clone());
    for k in 0..4u128 {
        store.create_job(&format!("j{k}"), Priority::Normal, &items(k * 100..k * 100 + 100)).await.unwrap();
    }
    // Every aggregator gets every event for all jobs, in a different order: only
    // one application of each may count.
    let tasks: Vec<_> = (0..4)
        .map(|a| {
            let store = Arc::clone(&store);
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
    assert_eq!(db.sql().await.query_one("SELECT count(*) FROM pending_points", &[]).await.unwrap().get::<_, i64>(0), 0);
    db.finish().await;
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    // Port 1 refuses connections; no test database needed.
    match PostgresJobStore::connect("postgres://postgres@127.0.0.1:1/x?connect_timeout=2", 1).await {
        Err(JobStoreError::Unavailable(msg)) => assert!(msg.contains("connecting"), "{msg}"),
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("connected to port 1"),
    }
}
