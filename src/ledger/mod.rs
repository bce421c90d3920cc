//! The ledger: durable record of runs, items and their states, checkpoints, small
//! key-value state, webhook event ids and the audit chain. SQLite by default; the SQL is
//! portable (`$N` placeholders) so a PostgreSQL backend can share it.
//!
//! Item writes from workers go through [`writer::LedgerWriter`], which batches them.

pub mod audit_log;
mod items;
mod schema;
mod state;
pub mod writer;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

pub use items::{AdmitItem, Admitted, ItemFilter, ItemRow, ItemUpdate, ResumableItem};
pub use state::AuditEntry;

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

    /// Opens a ledger from a URL: `sqlite://PATH` (or a bare path).
    pub async fn open_url(url: &str) -> Result<Ledger, LedgerError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Err(LedgerError::Invalid(
                "the PostgreSQL ledger is not available in this build yet; use --state DIR or \
                 --ledger sqlite://PATH"
                    .into(),
            ));
        }
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        Self::open_file(Path::new(path)).await
    }

    async fn open_file(path: &Path) -> Result<Ledger, LedgerError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30));
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
            let mut tx = self
                .pool
                .begin()
                .await
                .doing(|| "starting migration".into())?;
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

    #[test]
    fn states_round_trip_through_text() {
        for st in ItemState::ALL {
            assert_eq!(st.as_str().parse::<ItemState>().unwrap(), st);
        }
    }
}
