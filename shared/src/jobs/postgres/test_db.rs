//! A fresh PostgreSQL database per test: `IMGIDX_TEST_PG_URL` is an admin URL (e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`). Tests skip when it is unset, unless
//! `IMGIDX_REQUIRE_SERVICES=1` says they must run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tokio_postgres::NoTls;
use uuid::Uuid;

use super::PostgresJobStore;

/// A fresh database holding a migrated store; `finish` drops it.
pub(in crate::jobs) struct TestDb {
    pub admin_url: String,
    pub name: String,
    pub url: String,
    pub store: PostgresJobStore,
}

impl TestDb {
    pub async fn new() -> Option<Self> {
        let admin_url = admin_url()?;
        let name = fresh_name();
        let url = with_database(&admin_url, &name);
        let store = PostgresJobStore::connect(&url, 8).await.expect("connect to a fresh test database");
        Some(Self { admin_url, name, url, store })
    }

    pub async fn finish(self) {
        drop(self.store);
        drop_database(&self.admin_url, &self.name).await;
    }

    pub async fn sql(&self) -> deadpool_postgres::Client {
        self.store.client().await.unwrap()
    }
}

/// The admin URL, or `None` (after saying why) when PostgreSQL tests are to be skipped.
pub(in crate::jobs) fn admin_url() -> Option<String> {
    let Ok(admin_url) = std::env::var("IMGIDX_TEST_PG_URL") else {
        assert!(
            std::env::var("IMGIDX_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "IMGIDX_REQUIRE_SERVICES=1 but IMGIDX_TEST_PG_URL is not set; point it at a PostgreSQL \
             admin URL such as postgres://postgres@127.0.0.1:5432/postgres"
        );
        eprintln!("skipping PostgreSQL job store test: IMGIDX_TEST_PG_URL is not set");
        return None;
    };
    Some(admin_url)
}

pub(in crate::jobs) fn fresh_name() -> String {
    format!("imgidx_test_{}", Uuid::new_v4().simple())
}

pub(in crate::jobs) async fn drop_database(admin_url: &str, name: &str) {
    let (client, connection) = tokio_postgres::connect(admin_url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.unwrap();
}

/// `url` with its database path replaced by `name` (query string kept).
pub(in crate::jobs) fn with_database(url: &str, name: &str) -> String {
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

#[test]
fn database_is_swapped_in_urls() {
    assert_eq!(with_database("postgres://u:p@h:5/postgres", "x"), "postgres://u:p@h:5/x");
    assert_eq!(with_database("postgres://h/postgres?sslmode=disable", "x"), "postgres://h/x?sslmode=disable");
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}
