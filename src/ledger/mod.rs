//! The ledger: durable record of runs, items and their states, checkpoints, small
//! key-value state, webhook event ids and the audit chain. SQLite (a file; the default) or
//! PostgreSQL (`--ledger postgres://…`); the SQL is shared where the dialects agree (see
//! `backend.rs`).
//!
//! Item writes from workers go through [`writer::LedgerWriter`], which batches them.

pub mod audit_log;
mod backend;
mod budgets;
pub mod cluster;
#[cfg(test)]
pub(crate) mod contract;
mod events;
mod items;
mod schedule;
mod schema;
mod state;
pub mod writer;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use backend::{BeginWrite, Pool, TxLock, TxLocks, with_pool};

pub use backend::{Backend, is_postgres_url, redact_url};
pub use events::StoredEvent;
pub use items::{AdmitItem, Admitted, ItemFilter, ItemRow, ItemUpdate, ResumableItem, Waiting};
pub use state::{AuditEntry, AuditEvent};

/// The state of an item in the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ItemState {
    Pending,
    Leased,
    Done,
    Skipped,
    Deferred,
    Failed,
    Quarantined,
}

impl ItemState {
    pub const ALL: [ItemState; 7] = [
        ItemState::Pending,
        ItemState::Leased,
        ItemState::Done,
        ItemState::Skipped,
        ItemState::Deferred,
        ItemState::Failed,
        ItemState::Quarantined,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Pending => "pending",
            ItemState::Leased => "leased",
            ItemState::Done => "done",
            ItemState::Skipped => "skipped",
            ItemState::Deferred => "deferred",
            ItemState::Failed => "failed",
            ItemState::Quarantined => "quarantined",
        }
    }

    /// Final states are never processed again unless a user asks (`cxpipe items retry`).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ItemState::Done | ItemState::Skipped | ItemState::Quarantined
        )
    }
}

impl FromStr for ItemState {
    type Err = LedgerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ItemState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| LedgerError::Invalid(format!("unknown item state {s:?}")))
    }
}

/// Errors from the ledger, naming what was being done.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger: {doing}: {source}")]
    Db {
        doing: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("ledger: {0}")]
    Invalid(String),
    #[error("ledger: the writer has stopped (an earlier write failed)")]
    WriterGone,
    #[error(
        "ledger: {lost_updates} item update(s) and {lost_audits} audit event(s) could not be \
         written: {cause}"
    )]
    WriteFailed {
        lost_updates: usize,
        lost_audits: usize,
        cause: String,
    },
    #[error(
        "no ledger in {}: {} does not exist (a ledger is created by the first \
         `cxpipe run SCRIPT --state {}`; check --state or --ledger)",
        .dir.display(), .file.display(), .dir.display()
    )]
    Missing {
        dir: std::path::PathBuf,
        file: std::path::PathBuf,
    },
    #[error(
        "another run of {pipeline} for tenant {tenant} is in progress (run {run_id}); \
         wait for it to finish (a killed run is taken over {stale_secs}s after its last heartbeat)"
    )]
    Busy {
        pipeline: String,
        tenant: String,
        run_id: String,
        stale_secs: i64,
    },
}

/// SQLite's primary result codes that mean "another connection holds the lock".
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
/// PostgreSQL SQLSTATEs after which the same transaction may succeed if tried again:
/// serialization failure, deadlock detected, lock not available.
const PG_RETRYABLE: [&str; 3] = ["40001", "40P01", "55P03"];

impl LedgerError {
    /// True when the database was busy (locked by another writer): the same write may
    /// succeed if tried again a little later. Decided here, once.
    pub fn is_busy(&self) -> bool {
        let LedgerError::Db { source, .. } = self else {
            return false;
        };
        match source {
            sqlx::Error::Database(e) => e.code().is_some_and(|c| {
                PG_RETRYABLE.contains(&c.as_ref())
                    || c.parse::<i32>()
                        .is_ok_and(|c| matches!(c & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
            }),
            sqlx::Error::PoolTimedOut => true,
            _ => false,
        }
    }
}

pub(crate) trait DbContext<T> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, LedgerError>;
}

impl<T> DbContext<T> for Result<T, sqlx::Error> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, LedgerError> {
        self.map_err(|source| LedgerError::Db {
            doing: what(),
            source,
        })
    }
}

/// Milliseconds since the Unix epoch, the ledger's time unit.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// How long a statement waits for another connection's write lock before failing busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A handle to the ledger database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ledger {
    pool: Pool,
}

impl Ledger {
    /// Opens (creating if needed) the ledger in `state_dir/ledger.sqlite`.
    pub async fn open_dir(state_dir: &Path) -> Result<Ledger, LedgerError> {
        std::fs::create_dir_all(state_dir).map_err(|e| {
            LedgerError::Invalid(format!(
                "cannot create state dir {}: {e}",
                state_dir.display()
            ))
        })?;
        Self::open_file(&state_dir.join("ledger.sqlite")).await
    }

    /// Opens the ledger in `state_dir/ledger.sqlite` only if it exists: creates nothing
    /// (for commands that look at a ledger, such as `cxpipe items`).
    pub async fn open_existing_dir(state_dir: &Path) -> Result<Ledger, LedgerError> {
        let file = state_dir.join("ledger.sqlite");
        if !file.is_file() {
            return Err(LedgerError::Missing {
                dir: state_dir.to_path_buf(),
                file,
            });
        }
        Self::open_file(&file).await
    }

    /// Opens a ledger from a URL: `postgres://…` (creating its tables if needed), or
    /// `sqlite://PATH` (or a bare path).
    pub async fn open_url(url: &str) -> Result<Ledger, LedgerError> {
        if is_postgres_url(url) {
            let pool = backend::connect_postgres(url).await?;
            return Self::open_pool(Pool::Postgres(pool)).await;
        }
        Self::open_file(&sqlite_path(url)).await
    }

    /// Opens a ledger from a URL only if it exists: creates nothing (a PostgreSQL
    /// database must already hold the ledger's tables).
    pub async fn open_existing_url(url: &str) -> Result<Ledger, LedgerError> {
        if is_postgres_url(url) {
            let pool = backend::connect_postgres(url).await?;
            let tables: Option<String> =
                sqlx::query_scalar("SELECT CAST(to_regclass('schema_migrations') AS TEXT)")
                    .fetch_one(&pool)
                    .await
                    .doing(|| format!("looking for the ledger in {}", redact_url(url)))?;
            if tables.is_none() {
                pool.close().await;
                return Err(LedgerError::Invalid(format!(
                    "no ledger in {}: the database has no cxpipe tables (they are created by \
                     the first `cxpipe run SCRIPT --ledger URL`; check --ledger)",
                    redact_url(url)
                )));
            }
            return Self::open_pool(Pool::Postgres(pool)).await;
        }
        let file = sqlite_path(url);
        if !file.is_file() {
            let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
            return Err(LedgerError::Missing { dir, file });
        }
        Self::open_file(&file).await
    }

    async fn open_file(path: &Path) -> Result<Ledger, LedgerError> {
        Self::open_file_with(path, BUSY_TIMEOUT).await
    }

    /// Opens `path` with a given busy timeout (tests use a short one to see contention).
    pub(crate) async fn open_file_with(
        path: &Path,
        busy_timeout: Duration,
    ) -> Result<Ledger, LedgerError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .doing(|| format!("opening {}", path.display()))?;
        Self::open_pool(Pool::Sqlite(pool)).await
    }

    /// A ledger on `pool`, its schema brought up to date.
    pub(crate) async fn open_pool(pool: Pool) -> Result<Ledger, LedgerError> {
        let ledger = Ledger { pool };
        ledger.migrate().await?;
        Ok(ledger)
    }

    /// Which database this ledger lives in.
    pub fn backend(&self) -> Backend {
        self.pool.backend()
    }

    /// Closes every connection (waiting for the ones in use to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Applies every migration not yet applied, each in its own transaction. Concurrent
    /// openers of a new database wait for each other (the migrations lock).
    async fn migrate(&self) -> Result<(), LedgerError> {
        with_pool!(&self.pool, |pool| {
            let mut tx = pool
                .begin_write("starting to read the schema version")
                .await?;
            tx.lock(TxLock::Migrations).await?;
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, \
                 name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            )
            .execute(&mut *tx)
            .await
            .doing(|| "creating schema_migrations".into())?;
            let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
                .fetch_all(&mut *tx)
                .await
                .doing(|| "reading schema_migrations".into())?
                .iter()
                .map(|r| r.get::<i64, _>(0))
                .collect();
            tx.commit()
                .await
                .doing(|| "committing the schema version".into())?;
            for m in schema::MIGRATIONS
                .iter()
                .filter(|m| !applied.contains(&m.version))
            {
                let mut tx = pool.begin_write("starting migration").await?;
                tx.lock(TxLock::Migrations).await?;
                // Another process may have applied it since the read above.
                let done: Option<i64> =
                    sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                        .bind(m.version)
                        .fetch_optional(&mut *tx)
                        .await
                        .doing(|| format!("checking migration {}", m.version))?;
                if done.is_some() {
                    continue;
                }
                for stmt in m.statements {
                    sqlx::query(*stmt)
                        .execute(&mut *tx)
                        .await
                        .doing(|| format!("applying migration {} ({})", m.version, m.name))?;
                }
                sqlx::query(
                    "INSERT INTO schema_migrations (version, name, applied_at) \
                     VALUES ($1, $2, $3)",
                )
                .bind(m.version)
                .bind(m.name)
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .doing(|| "recording migration".into())?;
                tx.commit()
                    .await
                    .doing(|| format!("committing migration {}", m.version))?;
            }
            Ok(())
        })
    }

    /// The SQLite pool, for tests that reach into a SQLite ledger.
    ///
    /// # Panics
    /// On a PostgreSQL ledger.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &sqlx::SqlitePool {
        match &self.pool {
            Pool::Sqlite(pool) => pool,
            Pool::Postgres(_) => panic!("Ledger::pool is the SQLite pool; this is PostgreSQL"),
        }
    }
}

/// The file of a `sqlite://PATH` (or bare path) ledger URL.
fn sqlite_path(url: &str) -> std::path::PathBuf {
    Path::new(url.strip_prefix("sqlite://").unwrap_or(url)).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::contract::contract_tests;

    contract_tests! {
        /// Opening an up-to-date ledger again, from several openers at once, applies no
        /// migration twice.
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn migrations_are_idempotent(db) {
            let openers: Vec<_> = (0..4).map(|_| db.reopen()).collect();
            futures::future::join_all(openers).await;
            assert_eq!(
                db.count("schema_migrations").await,
                schema::MIGRATIONS.len() as i64
            );
        }
    }

    /// A deferred transaction that reads and then writes cannot wait for the lock; every
    /// transaction in the ledger starts through `begin_write` (`BEGIN IMMEDIATE`).
    #[test]
    fn no_ledger_transaction_is_begun_deferred() {
        let deferred = concat!(".begin", "()");
        for (file, source) in [
            ("mod.rs", include_str!("mod.rs")),
            ("backend.rs", include_str!("backend.rs")),
            ("events.rs", include_str!("events.rs")),
            ("items.rs", include_str!("items.rs")),
            ("state.rs", include_str!("state.rs")),
            ("schedule.rs", include_str!("schedule.rs")),
            ("writer.rs", include_str!("writer.rs")),
        ] {
            assert!(
                !source.contains(deferred),
                "src/ledger/{file} begins a deferred transaction; use begin_write"
            );
        }
    }

    #[tokio::test]
    async fn a_missing_ledger_is_reported_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("nowhere");
        let err = Ledger::open_existing_dir(&state).await.unwrap_err();
        assert!(matches!(err, LedgerError::Missing { .. }), "{err}");
        assert!(!state.exists());
        let url = format!("sqlite://{}", state.join("l.sqlite").display());
        assert!(Ledger::open_existing_url(&url).await.is_err());
        assert!(!state.exists());
    }

    #[test]
    fn states_round_trip_through_text() {
        for st in ItemState::ALL {
            assert_eq!(st.as_str().parse::<ItemState>().unwrap(), st);
        }
    }
}
