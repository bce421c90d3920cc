//! `--ledger postgres://…` end to end through the binary: a run keeps its items, kv and audit
//! chain in PostgreSQL, the next run finds the items done, `cxpipe items` reads them back,
//! and a database without the ledger's tables is named (without its password). Each test
//! uses a schema of its own. Without `CXPIPE_TEST_POSTGRES_URL` each test prints a loud
//! SKIPPED line and passes (`.ci/run` starts a server and sets it).

use std::io::Write as _;

use crate::harness::TestEnv;

const ITEMS: u64 = 40;

const SCRIPT: &str = r#"
const OPTIONS = #{ concurrency: 4, max_attempts: 1 };
fn discover(ctx) { for i in 0..40 { ctx.emit(`rec-${i}`, i); } }
fn process(ctx, n) {
    ctx.kv.set(`seen-${n}`, n);
    ctx.audit("RECORDING_SEEN", #{ n: n });
    n
}
"#;

/// The test server's URL, or `None` after a SKIPPED line on stderr (which the test harness
/// does not capture).
pub fn server_url(test: &str) -> Option<String> {
    let url = std::env::var("CXPIPE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED ledger_postgres::{test}: CXPIPE_TEST_POSTGRES_URL is not set \
             (`.ci/run` starts a server and sets it)"
        );
    }
    url
}

/// A fresh schema on the server, dropped when the test passes; `url` opens it.
pub struct Schema {
    server: String,
    name: String,
    pub url: String,
}

impl Schema {
    pub async fn create(server: &str) -> Schema {
        let name = format!("cxpipe_it_{}", uuid::Uuid::new_v4().simple());
        admin(server, &format!("CREATE SCHEMA {name}")).await;
        let sep = if server.contains('?') { '&' } else { '?' };
        Schema {
            server: server.to_string(),
            url: format!("{server}{sep}options[search_path]={name}"),
            name,
        }
    }

    pub async fn drop(self) {
        admin(&self.server, &format!("DROP SCHEMA {} CASCADE", self.name)).await;
    }
}

async fn admin(server: &str, sql: &str) {
    let pool = sqlx::PgPool::connect(server)
        .await
        .unwrap_or_else(|e| panic!("connecting to CXPIPE_TEST_POSTGRES_URL: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pool.close().await;
}

#[tokio::test]
async fn a_run_keeps_its_ledger_in_postgres_and_the_next_run_finds_the_work_done() {
    let Some(server) = server_url("a_run_keeps_its_ledger_in_postgres") else {
        return;
    };
    let schema = Schema::create(&server).await;
    let env = TestEnv::new();
    let script = env.write("pg.rhai", SCRIPT);
    let script = script.to_str().unwrap();

    let first = env.cxpipe(&["run", script, "--ledger", &schema.url, "--json"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.json()["summary"]["done"].as_u64(), Some(ITEMS));
    assert!(
        !env.state_dir().exists() && !env.path().join(".cxpipe").exists(),
        "no SQLite ledger was made beside the PostgreSQL one"
    );

    let second = env.cxpipe(&["run", script, "--ledger", &schema.url, "--json"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.json()["summary"]["done"].as_u64(), Some(0));

    let listed = env.cxpipe(&["items", "ls", "--ledger", &schema.url]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed.stdout.contains("rec-0") && listed.stdout.contains("done"),
        "{}",
        listed.stdout
    );

    let ledger = cxpipe::ledger::Ledger::open_existing_url(&schema.url)
        .await
        .unwrap();
    let counts = ledger.count_items(&Default::default()).await.unwrap();
    assert_eq!(counts, vec![("done".to_string(), ITEMS as i64)]);
    let report = ledger.verify_audit(None).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.entries, ITEMS, "one audit event per item, chained");
    let rows = ledger.list_items(&Default::default(), 1).await.unwrap();
    let (pipeline, tenant) = (&rows[0].pipeline, &rows[0].tenant);
    assert_eq!(
        ledger.kv_get(pipeline, tenant, "seen-7").await.unwrap(),
        Some("7".to_string())
    );
    ledger.close().await;
    schema.drop().await;
}

#[tokio::test]
async fn a_database_without_the_ledger_is_named_without_its_password() {
    let Some(server) = server_url("a_database_without_the_ledger_is_named") else {
        return;
    };
    let schema = Schema::create(&server).await;
    let env = TestEnv::new();
    let listed = env.cxpipe(&["items", "ls", "--ledger", &schema.url]);
    assert_ne!(listed.code, 0, "{}", listed.stdout);
    assert!(
        listed.stderr.contains("no ledger in") && listed.stderr.contains("--ledger"),
        "{}",
        listed.stderr
    );
    if let Some(password) = password_of(&server) {
        assert!(
            !listed.stderr.contains(&password),
            "the password is in the error: {}",
            listed.stderr
        );
    }
    schema.drop().await;
}

/// The password of a `postgres://user:password@host/…` URL.
fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    Some(userinfo.split_once(':')?.1.to_string()).filter(|p| !p.is_empty())
}
