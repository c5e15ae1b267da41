//! The SQLite database: one pool, migrations at start-up, timed operations.
//!
//! Settings chosen for concurrent writers on one file:
//! - WAL journal: readers never block the writer, the writer never blocks readers;
//! - `synchronous=NORMAL`: a committed transaction survives the process being killed
//!   (it is in the WAL file); only a power cut can lose the last ones;
//! - a busy timeout, so that a writer waits for the lock instead of failing with
//!   "database is locked";
//! - write transactions start with `BEGIN IMMEDIATE` ([`Db::begin_write`]): they take the
//!   write lock first, so two of them can never deadlock by both upgrading a read lock
//!   (the case the busy timeout cannot resolve);
//! - a pool of [`MAX_CONNECTIONS`].

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::telemetry::BusinessMetrics;

/// Connections in the pool: reads run in parallel, writes take turns on the lock.
pub const MAX_CONNECTIONS: u32 = 8;

/// How long a write waits for the lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The pool, and the histogram that times each operation.
#[derive(Clone, Debug)]
pub struct Db {
    pool: SqlitePool,
    metrics: BusinessMetrics,
}

impl Db {
    /// Opens (creating it and its folder if needed) the database at `url`, such as
    /// `sqlite://data/invoicing.db`, and runs the migrations.
    pub async fn connect(
        url: &str,
        metrics: BusinessMetrics,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let parent = options.get_filename().parent();
        if let Some(parent) = parent.filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(BUSY_TIMEOUT + Duration::from_secs(5))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool, metrics })
    }

    /// The pool, for reads.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction, holding the write lock from its first statement.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// Runs `operation`, recording its duration in `invoicing_db_query_duration_seconds`
    /// with the label `operation="{name}"`.
    pub async fn timed<T>(&self, name: &'static str, operation: impl Future<Output = T>) -> T {
        self.metrics.time_db(name, operation).await
    }

    /// Whether the database answers a query.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop)
    }

    /// Copies the WAL into the database file and empties it, then waits for the
    /// connections in use and closes them all. Call it once no request can come.
    ///
    /// SQLite removes the WAL file when its last connection closes, but only if no other
    /// connection is closing at the same moment; the explicit checkpoint makes the
    /// database file complete on its own whatever the order of the closes.
    pub async fn close(&self) {
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await
        {
            tracing::warn!(%error, "cannot checkpoint the WAL before closing");
        }
        self.pool.close().await;
    }
}

/// Whether `error` is a violation of a UNIQUE constraint.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|error| error.is_unique_violation())
}

/// Whether `error` is a violation of a FOREIGN KEY constraint.
pub fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|error| error.is_foreign_key_violation())
}
