//! The harness of the ledger contract suite: each ledger test written with
//! [`contract_tests!`] runs on SQLite and on PostgreSQL, each run in a database of its own (a
//! temporary folder, or a fresh schema) so the tests run in parallel. The PostgreSQL runs
//! need `CXPIPE_TEST_POSTGRES_URL` (`.ci/run` starts a server and sets it); without it each
//! prints a loud SKIPPED line and passes.

use std::io::Write as _;
use std::str::FromStr as _;

use sqlx::postgres::PgConnectOptions;

use super::backend::{self, Pool, with_pool};
use super::{Backend, Ledger};

/// The variable naming the PostgreSQL server the contract suite may use.
pub(crate) const POSTGRES_URL_VAR: &str = "CXPIPE_TEST_POSTGRES_URL";

/// Connections of one test's PostgreSQL pool (tests run in parallel on one server).
const PG_TEST_CONNECTIONS: u32 = 4;

/// One test's own ledger database.
pub(crate) struct TestDb {
    pub ledger: Ledger,
    place: Place,
}

enum Place {
    Sqlite(tempfile::TempDir),
    Postgres {
        url: String,
        schema: String,
        options: Box<PgConnectOptions>,
    },
}

impl TestDb {
    /// A fresh ledger on `backend` for the test named `test`; `None` (after saying so on
    /// stderr, which the test harness does not capture) when PostgreSQL is not configured.
    pub(crate) async fn open(backend: Backend, test: &str) -> Option<TestDb> {
        let place = match backend {
            Backend::Sqlite => Place::Sqlite(tempfile::tempdir().expect("creating a temp dir")),
            Backend::Postgres => {
                let Some(url) = std::env::var(POSTGRES_URL_VAR)
                    .ok()
                    .filter(|u| !u.is_empty())
                else {
                    let _ = writeln!(
                        std::io::stderr(),
                        "SKIPPED {test} on PostgreSQL: {POSTGRES_URL_VAR} is not set \
                         (`.ci/run` starts a server and sets it)"
                    );
                    return None;
                };
                let schema = format!("cxpipe_test_{}", uuid::Uuid::new_v4().simple());
                admin(&url, &format!("CREATE SCHEMA {schema}")).await;
                let options = PgConnectOptions::from_str(&url)
                    .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR} is not a PostgreSQL URL: {e}"))
                    .options([("search_path", schema.as_str())])
                    .into();
                Place::Postgres {
                    url,
                    schema,
                    options,
                }
            }
        };
        let ledger = open_at(&place).await;
        Some(TestDb { ledger, place })
    }

    /// Another handle on the same database, as a second process would open it.
    pub(crate) async fn reopen(&self) -> Ledger {
        open_at(&self.place).await
    }

    /// Runs one statement on the ledger's database (tests that tamper with rows).
    pub(crate) async fn exec(&self, sql: &'static str) {
        with_pool!(&self.ledger.pool, |pool| sqlx::query(sql)
            .execute(pool)
            .await
            .map(|_| ())
            .unwrap_or_else(|e| panic!("{sql}: {e}")))
    }

    /// How many rows `table` holds.
    pub(crate) async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        with_pool!(&self.ledger.pool, |pool| sqlx::query_scalar(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}")))
    }

    /// Drops what the test created (a PostgreSQL schema; the temp folder goes by itself).
    pub(crate) async fn cleanup(self) {
        self.ledger.close().await;
        if let Place::Postgres { url, schema, .. } = &self.place {
            admin(url, &format!("DROP SCHEMA {schema} CASCADE")).await;
        }
    }
}

/// Opens (migrating) the ledger in `place`.
async fn open_at(place: &Place) -> Ledger {
    match place {
        Place::Sqlite(dir) => Ledger::open_dir(dir.path()).await,
        Place::Postgres { options, .. } => {
            let pool = backend::connect_postgres_with((**options).clone(), PG_TEST_CONNECTIONS)
                .await
                .expect("connecting to the test PostgreSQL");
            Ledger::open_pool(Pool::Postgres(pool)).await
        }
    }
    .expect("opening the test ledger")
}

/// Runs one statement on the test server outside any test schema.
async fn admin(url: &str, sql: &str) {
    let pool = backend::connect_postgres_with(
        PgConnectOptions::from_str(url).expect("a PostgreSQL URL"),
        1,
    )
    .await
    .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR}: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pool.close().await;
}

/// Writes each test once per backend, in modules `sqlite` and `postgres`: the body sees
/// `$db: &TestDb` (a fresh database of its own). Attributes (such as `#[tokio::test]`)
/// are given with each test.
macro_rules! contract_tests {
    ($( $(#[$meta:meta])* async fn $name:ident($db:ident) $body:block )*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                async fn $name() {
                    let db = $crate::ledger::contract::TestDb::open(
                        $crate::ledger::Backend::Sqlite,
                        concat!(module_path!(), "::", stringify!($name)),
                    )
                    .await
                    .expect("a SQLite test ledger");
                    {
                        let $db = &db;
                        $body
                    }
                    db.cleanup().await;
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                async fn $name() {
                    let Some(db) = $crate::ledger::contract::TestDb::open(
                        $crate::ledger::Backend::Postgres,
                        concat!(module_path!(), "::", stringify!($name)),
                    )
                    .await
                    else {
                        return;
                    };
                    {
                        let $db = &db;
                        $body
                    }
                    db.cleanup().await;
                }
            )*
        }
    };
}
pub(crate) use contract_tests;
