//! Connection settings and the embedded migrations (`shared/migrations/sqlite/`),
//! applied once each, even when two processes open a new file at the same moment.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use rusqlite::{params, Connection, TransactionBehavior};

use super::SqlResultExt;
use crate::jobs::JobStoreError;

pub(super) struct Migration {
    pub(super) version: i64,
    pub(super) name: &'static str,
    sql: &'static str,
}

/// In apply order; versions strictly increase. Never edit an applied file: add a new one.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "0001_init", sql: include_str!("../../../migrations/sqlite/0001_init.sql") },
    Migration {
        version: 2,
        name: "0002_item_outcomes",
        sql: include_str!("../../../migrations/sqlite/0002_item_outcomes.sql"),
    },
    Migration {
        version: 3,
        name: "0003_item_attempts",
        sql: include_str!("../../../migrations/sqlite/0003_item_attempts.sql"),
    },
    Migration {
        version: 4,
        name: "0004_job_published",
        sql: include_str!("../../../migrations/sqlite/0004_job_published.sql"),
    },
    Migration { version: 5, name: "0005_job_cancel", sql: include_str!("../../../migrations/sqlite/0005_job_cancel.sql") },
    Migration { version: 6, name: "0006_job_workers", sql: include_str!("../../../migrations/sqlite/0006_job_workers.sql") },
    Migration { version: 7, name: "0007_job_scans", sql: include_str!("../../../migrations/sqlite/0007_job_scans.sql") },
    Migration { version: 8, name: "0008_webhooks", sql: include_str!("../../../migrations/sqlite/0008_webhooks.sql") },
    Migration {
        version: 9,
        name: "0009_collections",
        sql: include_str!("../../../migrations/sqlite/0009_collections.sql"),
    },
    Migration { version: 10, name: "0010_batches", sql: include_str!("../../../migrations/sqlite/0010_batches.sql") },
    Migration { version: 11, name: "0011_curation", sql: include_str!("../../../migrations/sqlite/0011_curation.sql") },
    Migration {
        version: 12,
        name: "0012_model_switch",
        sql: include_str!("../../../migrations/sqlite/0012_model_switch.sql"),
    },
];

/// How long a write waits for another connection (another process on the same file)
/// to release the lock before the store counts as unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Durable, concurrent-reader-friendly settings; each is read back, so a file system
/// that cannot honour one fails the open instead of silently weakening it.
pub(super) fn configure(conn: &Connection) -> Result<(), JobStoreError> {
    conn.busy_timeout(BUSY_TIMEOUT).ctx("setting busy_timeout")?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).ctx("setting journal_mode")?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(JobStoreError::Other(format!(
            "the job store needs write-ahead logging, but journal_mode stayed {mode:?} (unsupported file system?)"
        )));
    }
    // FULL: a commit reaches the disk before it returns, so results survive a power cut.
    conn.pragma_update(None, "synchronous", "FULL").ctx("setting synchronous")?;
    conn.pragma_update(None, "foreign_keys", true).ctx("setting foreign_keys")?;
    expect_pragma(conn, "synchronous", 2)?;
    expect_pragma(conn, "foreign_keys", 1)
}

fn expect_pragma(conn: &Connection, name: &str, expected: i64) -> Result<(), JobStoreError> {
    let value: i64 = conn.pragma_query_value(None, name, |row| row.get(0)).ctx("reading a setting")?;
    if value == expected {
        Ok(())
    } else {
        Err(JobStoreError::Other(format!("the job store could not set {name} = {expected} (it is {value})")))
    }
}

/// Applies the migrations not yet recorded in `schema_migrations`, all in one
/// transaction that holds the write lock from its start.
///
/// Foreign keys are off meanwhile: a migration that rebuilds a table (SQLite cannot
/// change a constraint in place) drops the old one, which with them on would delete
/// its children. They are checked before the commit and on again after it.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), JobStoreError> {
    conn.pragma_update(None, "foreign_keys", false).ctx("migrations: foreign keys off")?;
    let applied = apply_pending(conn);
    conn.pragma_update(None, "foreign_keys", true).ctx("migrations: foreign keys on")?;
    expect_pragma(conn, "foreign_keys", 1)?;
    applied
}

fn apply_pending(conn: &mut Connection) -> Result<(), JobStoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("migrations: begin")?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT    NOT NULL,
             applied_at INTEGER NOT NULL
         ) STRICT",
    )
    .ctx("migrations: create schema_migrations")?;
    let applied: HashSet<i64> = {
        let mut stmt = tx.prepare("SELECT version FROM schema_migrations").ctx("migrations: read applied")?;
        let versions = stmt.query_map([], |row| row.get(0)).ctx("migrations: read applied")?;
        versions.collect::<Result<_, _>>().ctx("migrations: read applied")?
    };
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        let context = format!("migration {}", m.name);
        tx.execute_batch(m.sql).ctx(&context)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, Utc::now().timestamp_micros()],
        )
        .ctx(&context)?;
        tracing::info!(migration = m.name, "applied job store migration (SQLite)");
    }
    let broken: i64 =
        tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| row.get(0)).ctx("migrations: check foreign keys")?;
    if broken > 0 {
        return Err(JobStoreError::Other(format!("migrations left {broken} rows with broken foreign keys; rolled back")));
    }
    tx.commit().ctx("migrations: commit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_ordered_and_named_after_their_version() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
        for m in MIGRATIONS {
            assert!(m.name.starts_with(&format!("{:04}_", m.version)), "{}", m.name);
            assert!(!m.sql.trim().is_empty());
        }
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn the_jobs_table_rebuild_keeps_every_row_and_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("jobs.sqlite3")).unwrap();
        configure(&conn).unwrap();
        // The schema as version 4 left it, holding a job with an item and a claim.
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT",
        )
        .unwrap();
        for m in MIGRATIONS.iter().filter(|m| m.version <= 4) {
            conn.execute_batch(m.sql).unwrap();
            conn.execute("INSERT INTO schema_migrations VALUES (?1, ?2, 0)", params![m.version, m.name]).unwrap();
        }
        conn.execute_batch(
            "INSERT INTO jobs (job_id, status, priority, total, created_at, published_at) VALUES ('j', 'running', 'high', 1, 5, 6);
             INSERT INTO job_items (job_id, point_id, path, queued_at) VALUES ('j', zeroblob(16), '/a.jpg', 5);
             INSERT INTO pending_points (point_id, job_id) VALUES (zeroblob(16), 'j');",
        )
        .unwrap();

        migrate(&mut conn).unwrap();
        let count = |table: &str| conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!((count("jobs"), count("job_items"), count("pending_points")), (1, 1, 1));
        let (status, published): (String, i64) =
            conn.query_row("SELECT status, published_at FROM jobs WHERE job_id = 'j'", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!((status.as_str(), published), ("running", 6));
        conn.execute("UPDATE jobs SET status = 'cancelled' WHERE job_id = 'j'", []).unwrap();
        // Foreign keys are on again, and point at the new table.
        assert!(conn.execute("INSERT INTO pending_points (point_id, job_id) VALUES (randomblob(16), 'nope')", []).is_err());
        conn.execute("DELETE FROM jobs WHERE job_id = 'j'", []).unwrap();
        assert_eq!((count("job_items"), count("pending_points")), (0, 0), "children go with their job");
    }
}
