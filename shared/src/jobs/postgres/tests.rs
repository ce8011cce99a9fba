//! PostgreSQL specifics: migrations, database creation, connection errors. What every
//! backend must do is in `jobs/conformance.rs`, which runs against PostgreSQL too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Utc;
use tokio_postgres::NoTls;

use super::test_db::{drop_database, fresh_name, with_database, TestDb};
use super::*;
use crate::jobs::conformance::{indexed, item, requeued};

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
async fn an_existing_database_is_upgraded_once_and_keeps_its_pending_items() {
    let Some(admin_url) = test_db::admin_url() else { return };
    let name = fresh_name();
    let url = with_database(&admin_url, &name);
    // A database as the first release left it: migration 1 only, with a queued job.
    {
        schema::ensure_database(&schema::parse_url(&url).unwrap()).await.unwrap();
        let (mut client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(connection);
        schema::migrate_with(&mut client, &schema::MIGRATIONS[..1]).await.unwrap();
        client
            .batch_execute(
                "INSERT INTO jobs (job_id, status, priority, total) VALUES ('old', 'queued', 'high', 2);
                 INSERT INTO job_items (job_id, point_id, path, size, mtime_ns) VALUES
                     ('old', '00000000-0000-0000-0000-000000000001', '/images/1.jpg', 1001, 1700000000000000000),
                     ('old', '00000000-0000-0000-0000-000000000002', '/images/2.jpg', 1002, 1700000000000000000);
                 INSERT INTO pending_points (point_id, job_id) VALUES
                     ('00000000-0000-0000-0000-000000000001', 'old'),
                     ('00000000-0000-0000-0000-000000000002', 'old');",
            )
            .await
            .unwrap();
    }
    let store = PostgresJobStore::connect(&url, 2).await.unwrap();
    PostgresJobStore::connect(&url, 2).await.expect("connecting again applies nothing twice");
    let client = store.client().await.unwrap();
    let versions: Vec<i32> = client
        .query("SELECT version FROM schema_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=schema::MIGRATIONS.len() as i32).collect::<Vec<_>>());

    // The old pending items count as queued when the upgrade ran, and progress as before.
    store.apply_events(&[indexed("old", 1)]).await.unwrap();
    let taken = store.requeue_stale_items(Utc::now(), 10).await.unwrap();
    assert_eq!(taken, vec![requeued("old", Priority::High, item(2))]);
    drop((client, store));
    drop_database(&admin_url, &name).await;
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
