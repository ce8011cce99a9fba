//! Database bootstrap: create the database when missing, then apply the embedded
//! migrations exactly once, even when several services start at the same moment.

use std::collections::HashSet;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};

use super::tls::{self, Tls};
use super::{db_error, PgResultExt};
use crate::jobs::JobStoreError;

pub(super) struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

/// In apply order; versions strictly increase. Never edit an applied file: add a new one.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "0001_init", sql: include_str!("../../../migrations/0001_init.sql") },
    Migration { version: 2, name: "0002_requeue", sql: include_str!("../../../migrations/0002_requeue.sql") },
    Migration {
        version: 3,
        name: "0003_item_outcomes",
        sql: include_str!("../../../migrations/0003_item_outcomes.sql"),
    },
    Migration {
        version: 4,
        name: "0004_item_attempts",
        sql: include_str!("../../../migrations/0004_item_attempts.sql"),
    },
    Migration {
        version: 5,
        name: "0005_job_published",
        sql: include_str!("../../../migrations/0005_job_published.sql"),
    },
    Migration { version: 6, name: "0006_job_cancel", sql: include_str!("../../../migrations/0006_job_cancel.sql") },
    Migration { version: 7, name: "0007_job_workers", sql: include_str!("../../../migrations/0007_job_workers.sql") },
    Migration { version: 8, name: "0008_job_scans", sql: include_str!("../../../migrations/0008_job_scans.sql") },
    Migration { version: 9, name: "0009_webhooks", sql: include_str!("../../../migrations/0009_webhooks.sql") },
    Migration { version: 10, name: "0010_collections", sql: include_str!("../../../migrations/0010_collections.sql") },
    Migration { version: 11, name: "0011_batches", sql: include_str!("../../../migrations/0011_batches.sql") },
    Migration { version: 12, name: "0012_curation", sql: include_str!("../../../migrations/0012_curation.sql") },
    Migration {
        version: 13,
        name: "0013_model_switch",
        sql: include_str!("../../../migrations/0013_model_switch.sql"),
    },
];

/// Advisory lock held while migrating ("imgidx" in ASCII, then 1), so concurrent
/// starters apply migrations one after the other.
const MIGRATION_LOCK_KEY: i64 = 0x0069_6d67_6964_7801;

/// Used when the URL sets no `connect_timeout`, so an unreachable server fails
/// startup instead of hanging it.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn parse_url(url: &str) -> Result<Config, JobStoreError> {
    // The parser's message never echoes the URL, so no password reaches the logs.
    let mut config: Config = url.parse().map_err(|e| JobStoreError::Other(format!("invalid job store URL: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("imgidx");
    }
    Ok(config)
}

/// Creates the database named by `config` when it does not exist yet, through the
/// `postgres` maintenance database with the same credentials.
pub(super) async fn ensure_database(config: &Config, tls: &Tls) -> Result<(), JobStoreError> {
    match tls::connect(config, tls).await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => create_database(config, tls).await,
        Err(e) => Err(match db_error("connecting to the job database", &e) {
            JobStoreError::Unavailable(m) => {
                JobStoreError::Unavailable(crate::tls::hint_unknown_issuer(m, "jobs.tls_ca_file"))
            }
            other => other,
        }),
    }
}

async fn create_database(config: &Config, tls: &Tls) -> Result<(), JobStoreError> {
    let name = database_name(config)?;
    let mut admin = config.clone();
    admin.dbname("postgres");
    let client = tls::connect(&admin, tls).await.ctx("connecting to the postgres database to create the job database")?;
    match client.batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name))).await {
        Ok(()) => {
            tracing::info!(database = %name, "created job database");
            Ok(())
        }
        // Another service created it between our check and our CREATE.
        Err(e) if is_concurrent_create(&e) => Ok(()),
        Err(e) => Err(db_error("creating the job database", &e)),
    }
}

fn is_concurrent_create(e: &tokio_postgres::Error) -> bool {
    // DUPLICATE_DATABASE normally; UNIQUE_VIOLATION on pg_database when two CREATEs race.
    matches!(e.code(), Some(c) if *c == SqlState::DUPLICATE_DATABASE || *c == SqlState::UNIQUE_VIOLATION)
}

fn database_name(config: &Config) -> Result<String, JobStoreError> {
    // PostgreSQL's own default: the database named after the user.
    config
        .get_dbname()
        .or(config.get_user())
        .map(str::to_owned)
        .ok_or_else(|| JobStoreError::Other("job store URL names neither a database nor a user".into()))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Applies the migrations not yet recorded in `schema_migrations`, all in one
/// transaction under an advisory lock.
pub(super) async fn migrate(client: &mut Client) -> Result<(), JobStoreError> {
    migrate_with(client, MIGRATIONS).await
}

/// [`migrate`] with the given list; tests use a prefix to build an older schema.
pub(super) async fn migrate_with(client: &mut Client, migrations: &[Migration]) -> Result<(), JobStoreError> {
    let tx = client.transaction().await.ctx("migrations: begin")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY]).await.ctx("migrations: lock")?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .ctx("migrations: create schema_migrations")?;
    let applied: HashSet<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .ctx("migrations: read applied")?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()
        .ctx("migrations: read applied")?;
    for m in migrations.iter().filter(|m| !applied.contains(&m.version)) {
        let context = format!("migration {}", m.name);
        tx.batch_execute(m.sql).await.map_err(|e| db_error(&context, &e))?;
        tx.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", &[&m.version, &m.name])
            .await
            .map_err(|e| db_error(&context, &e))?;
        tracing::info!(migration = m.name, "applied job store migration");
    }
    tx.commit().await.ctx("migrations: commit")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("imgidx"), "\"imgidx\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn database_defaults_to_user() {
        let config: Config = "postgres://alice@localhost".parse().unwrap();
        assert_eq!(database_name(&config).unwrap(), "alice");
        let config: Config = "postgres://alice@localhost/jobs".parse().unwrap();
        assert_eq!(database_name(&config).unwrap(), "jobs");
    }
}
