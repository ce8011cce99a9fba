//! One store per test, of either backend, plus a look at its claims that the
//! `JobStore` trait does not offer.

use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags};
use tempfile::TempDir;
use uuid::Uuid;

use crate::jobs::postgres::test_db::TestDb;
use crate::jobs::{JobStore, SqliteJobStore};

pub(in crate::jobs) struct Harness {
    store: Arc<dyn JobStore>,
    backend: Backend,
}

enum Backend {
    Sqlite { _dir: TempDir, path: PathBuf },
    Postgres(TestDb),
}

/// A store in a new SQLite file under a temporary directory.
pub(in crate::jobs) fn sqlite() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.sqlite");
    let store = Arc::new(SqliteJobStore::open(&path).unwrap());
    Harness { store, backend: Backend::Sqlite { _dir: dir, path } }
}

/// A store in a new PostgreSQL database, or `None` when those tests are skipped.
pub(in crate::jobs) async fn postgres() -> Option<Harness> {
    let db = TestDb::new().await?;
    Some(Harness { store: Arc::new(db.store.clone()), backend: Backend::Postgres(db) })
}

impl Harness {
    pub fn store(&self) -> &dyn JobStore {
        &*self.store
    }

    /// The store, for tasks of its own.
    pub fn shared(&self) -> Arc<dyn JobStore> {
        Arc::clone(&self.store)
    }

    /// Every claim (a point pending in an active job), as (job, point), sorted.
    pub async fn claims(&self) -> Vec<(String, Uuid)> {
        let mut claims: Vec<(String, Uuid)> = match &self.backend {
            Backend::Sqlite { path, .. } => {
                let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
                let mut stmt = conn.prepare("SELECT job_id, point_id FROM pending_points").unwrap();
                stmt.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?)))
                    .unwrap()
                    .map(|r| r.map(|(job, point)| (job, Uuid::from_slice(&point).unwrap())))
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
            Backend::Postgres(db) => db
                .sql()
                .await
                .query("SELECT job_id, point_id FROM pending_points", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect(),
        };
        claims.sort();
        claims
    }

    /// The points `job_id` holds claims on, sorted.
    pub async fn claims_of(&self, job_id: &str) -> Vec<Uuid> {
        self.claims().await.into_iter().filter(|(j, _)| j == job_id).map(|(_, p)| p).collect()
    }

    pub async fn finish(self) {
        drop(self.store);
        match self.backend {
            Backend::Sqlite { .. } => {}
            Backend::Postgres(db) => db.finish().await,
        }
    }
}
