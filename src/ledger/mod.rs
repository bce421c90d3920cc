//! The ledger: durable record of runs, items and their states, checkpoints, small
//! key-value state, webhook event ids and the audit chain. SQLite by default; the SQL is
//! portable (`$N` placeholders) so a PostgreSQL backend can share it.
//!
//! Item writes from workers go through [`writer::LedgerWriter`], which batches them.

pub mod audit_log;
mod events;
mod items;
mod schedule;
mod schema;
mod state;
pub mod writer;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

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

impl LedgerError {
    /// True when the database was busy (locked by another writer): the same write may
    /// succeed if tried again a little later. Decided here, once.
    pub fn is_busy(&self) -> bool {
        let LedgerError::Db { source, .. } = self else {
            return false;
        };
        match source {
            sqlx::Error::Database(e) => e
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| matches!(c & 0xff, SQLITE_BUSY | SQLITE_LOCKED)),
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
    pool: SqlitePool,
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

    /// Opens a ledger from a URL: `sqlite://PATH` (or a bare path).
    pub async fn open_url(url: &str) -> Result<Ledger, LedgerError> {
        Self::open_file(&sqlite_path(url)?).await
    }

    /// Opens a ledger from a URL only if it exists: creates nothing.
    pub async fn open_existing_url(url: &str) -> Result<Ledger, LedgerError> {
        let file = sqlite_path(url)?;
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
        let ledger = Ledger { pool };
        ledger.migrate().await?;
        Ok(ledger)
    }

    /// Applies every migration not yet applied, each in its own transaction.
    async fn migrate(&self) -> Result<(), LedgerError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, \
             name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&self.pool)
        .await
        .doing(|| "creating schema_migrations".into())?;
        let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
            .fetch_all(&self.pool)
            .await
            .doing(|| "reading schema_migrations".into())?
            .iter()
            .map(|r| r.get::<i64, _>(0))
            .collect();
        for m in schema::MIGRATIONS
            .iter()
            .filter(|m| !applied.contains(&m.version))
        {
            let mut tx = self.begin_write("starting migration").await?;
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
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
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
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Starts a write transaction that holds the write lock from its first statement
    /// (`BEGIN IMMEDIATE`), waiting up to the busy timeout for it. Every transaction that
    /// writes starts here: a deferred transaction that reads first and then writes cannot
    /// wait for the lock and fails at once with "database is locked".
    pub(crate) async fn begin_write(
        &self,
        doing: &str,
    ) -> Result<Transaction<'static, Sqlite>, LedgerError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .doing(|| doing.to_string())
    }
}

/// The file of a `sqlite://PATH` (or bare path) ledger URL.
fn sqlite_path(url: &str) -> Result<std::path::PathBuf, LedgerError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(LedgerError::Invalid(
            "the PostgreSQL ledger is not available in this build yet; use --state DIR or \
             --ledger sqlite://PATH"
                .into(),
        ));
    }
    Ok(Path::new(url.strip_prefix("sqlite://").unwrap_or(url)).to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrations_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        Ledger::open_dir(dir.path()).await.unwrap();
        let ledger = Ledger::open_dir(dir.path()).await.unwrap();
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM schema_migrations")
            .fetch_one(ledger.pool())
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, schema::MIGRATIONS.len() as i64);
    }

    /// A deferred transaction that reads and then writes cannot wait for the lock; every
    /// transaction in the ledger starts through `begin_write` (`BEGIN IMMEDIATE`).
    #[test]
    fn no_ledger_transaction_is_begun_deferred() {
        let deferred = concat!(".begin", "()");
        for (file, source) in [
            ("mod.rs", include_str!("mod.rs")),
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
