//! The two ledger backends: SQLite (one file, for one host) and PostgreSQL (one database
//! several processes or hosts can share). The SQL is shared where the dialects agree (`$N`
//! placeholders, `ON CONFLICT`, `RETURNING`): [`with_pool!`] compiles one body once per
//! backend. Where they differ, the statement is chosen by [`Backend`] at the call site, and
//! the locks a write transaction takes are the [`TxLocks`] of its connection.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction};

use super::{DbContext, LedgerError};

/// Evaluates `$body` with `$p` bound to the pool of `$pool`, compiled once per backend (so
/// rows, transactions and connections have each backend's own types).
macro_rules! with_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::ledger::backend::Pool::Sqlite($p) => $body,
            $crate::ledger::backend::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Which database a ledger lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool of either backend.
#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    pub(crate) async fn close(&self) {
        with_pool!(self, |pool| pool.close().await)
    }
}

/// True for `postgres://` and `postgresql://` URLs.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The URL with any password replaced by `***`, for errors and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Connections a PostgreSQL ledger pool keeps at most.
const PG_MAX_CONNECTIONS: u32 = 8;

/// Connects to the PostgreSQL database of `url` (the password may come from the URL,
/// `PGPASSWORD` or `~/.pgpass`).
pub(crate) async fn connect_postgres(url: &str) -> Result<PgPool, LedgerError> {
    let options = PgConnectOptions::from_str(url)
        .doing(|| format!("reading the ledger URL {}", redact_url(url)))?;
    connect_postgres_with(options, PG_MAX_CONNECTIONS).await
}

pub(crate) async fn connect_postgres_with(
    options: PgConnectOptions,
    max_connections: u32,
) -> Result<PgPool, LedgerError> {
    let (host, port, database) = (
        options.get_host().to_string(),
        options.get_port(),
        options.get_database().unwrap_or("(default)").to_string(),
    );
    PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await
        .doing(|| format!("connecting to the PostgreSQL ledger {database} at {host}:{port}"))
}

/// Starting a write transaction.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;
    async fn begin_write(&self, doing: &str)
    -> Result<Transaction<'static, Self::Db>, LedgerError>;
}

impl BeginWrite for SqlitePool {
    type Db = Sqlite;
    /// Holds SQLite's one write lock from the first statement (`BEGIN IMMEDIATE`), waiting up
    /// to the busy timeout for it: a deferred transaction that reads and then writes cannot
    /// wait for the lock and fails at once with "database is locked".
    async fn begin_write(&self, doing: &str) -> Result<Transaction<'static, Sqlite>, LedgerError> {
        self.begin_with("BEGIN IMMEDIATE")
            .await
            .doing(|| doing.to_string())
    }
}

impl BeginWrite for PgPool {
    type Db = Postgres;
    /// READ COMMITTED with row locks; what must be serialised takes a [`TxLock`].
    async fn begin_write(
        &self,
        doing: &str,
    ) -> Result<Transaction<'static, Postgres>, LedgerError> {
        self.begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .doing(|| doing.to_string())
    }
}

/// What a write transaction serialises against other writers, until it ends.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TxLock {
    /// Applying migrations (two processes opening a new database at once).
    Migrations,
    /// Appending to the audit chain (reading its head, then linking after it).
    AuditChain,
}

/// Advisory lock keys of [`TxLock`] in PostgreSQL (arbitrary, fixed: "cxpi" and a number).
const PG_LOCK_MIGRATIONS: i64 = 0x6378_7069_0000_0001;
const PG_LOCK_AUDIT_CHAIN: i64 = 0x6378_7069_0000_0002;

pub(crate) trait TxLocks {
    async fn lock(&mut self, lock: TxLock) -> Result<(), LedgerError>;
}

impl TxLocks for SqliteConnection {
    /// Nothing to take: a SQLite write transaction already holds the database's one write
    /// lock ([`BeginWrite`]).
    async fn lock(&mut self, _lock: TxLock) -> Result<(), LedgerError> {
        Ok(())
    }
}

impl TxLocks for PgConnection {
    /// A transaction-scoped advisory lock, released at commit or rollback.
    async fn lock(&mut self, lock: TxLock) -> Result<(), LedgerError> {
        let key = match lock {
            TxLock::Migrations => PG_LOCK_MIGRATIONS,
            TxLock::AuditChain => PG_LOCK_AUDIT_CHAIN,
        };
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(key)
            .execute(&mut *self)
            .await
            .doing(|| format!("taking the {lock:?} lock"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://cx:s3cret@db.example:5432/ledger?sslmode=require"),
            "postgres://cx:***@db.example:5432/ledger?sslmode=require"
        );
        assert_eq!(
            redact_url("postgresql://cx@db/ledger"),
            "postgresql://cx@db/ledger"
        );
        assert_eq!(
            redact_url("sqlite:///tmp/l.sqlite"),
            "sqlite:///tmp/l.sqlite"
        );
        assert_eq!(redact_url("ledger.sqlite"), "ledger.sqlite");
    }
}
