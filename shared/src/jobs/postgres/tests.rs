//! PostgreSQL specifics: migrations, database creation, connection errors. What every
//! backend must do is in `jobs/conformance.rs`, which runs against PostgreSQL too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

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
        schema::ensure_database(&schema::parse_url(&url).unwrap(), &Tls::Plain).await.unwrap();
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

/// The CA of the test server's certificate (`scripts/services.sh` makes both).
fn test_ca_file() -> Option<PathBuf> {
    match std::env::var_os("IMGIDX_TEST_TLS_CA_FILE") {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            assert_ne!(std::env::var("IMGIDX_REQUIRE_SERVICES").as_deref(), Ok("1"), "IMGIDX_TEST_TLS_CA_FILE unset");
            eprintln!("skipping: IMGIDX_TEST_TLS_CA_FILE is not set (run tests/run.sh)");
            None
        }
    }
}

/// Whether the store's connection is encrypted, as the server sees it.
async fn uses_tls(store: &PostgresJobStore) -> bool {
    let client = store.client().await.unwrap();
    client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn tls_is_used_and_verified_when_asked_for() {
    let Some(db) = TestDb::new().await else { return };
    let Some(ca) = test_ca_file() else { return db.finish().await };
    // The server offers TLS, but the default (`prefer`) stays plain text.
    assert!(!uses_tls(&db.store).await);

    // A CA file asks for TLS and verifies the server against it.
    let store = PostgresJobStore::connect_with_ca(&db.url, 1, Some(&ca)).await.unwrap();
    assert!(uses_tls(&store).await);
    let require = format!("{}?sslmode=require", db.url);
    let store = PostgresJobStore::connect_with_ca(&require, 1, Some(&ca)).await.unwrap();
    assert!(uses_tls(&store).await);
    store.create_job("tls", Priority::Normal, &[item(1)]).await.unwrap();
    assert_eq!(store.job("tls").await.unwrap().unwrap().total_images, 1);

    // sslmode=require alone: the system roots do not know the test CA, so no connection.
    match PostgresJobStore::connect(&require, 1).await {
        Err(e) => assert!(e.to_string().contains("certificate"), "{e}"),
        Ok(_) => panic!("connected to a server whose certificate nobody vouches for"),
    }
    // sslmode=disable wins over nothing: plain text.
    let plain = PostgresJobStore::connect(&format!("{}?sslmode=disable", db.url), 1).await.unwrap();
    assert!(!uses_tls(&plain).await);
    db.finish().await;
}

#[tokio::test]
async fn a_ca_file_without_certificates_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");
    for (file, expected) in [(&empty, "no PEM certificate"), (&missing, "missing.pem")] {
        // No server is contacted: the file is read first.
        match PostgresJobStore::connect_with_ca("postgres://postgres@127.0.0.1:1/x", 1, Some(file)).await {
            Err(e) => assert!(e.to_string().contains(expected) && e.to_string().contains("tls_ca_file"), "{e}"),
            Ok(_) => panic!("connected with {}", file.display()),
        }
    }
}
