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
pub(super) fn migrate(conn: &mut Connection) -> Result<(), JobStoreError> {
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
}
