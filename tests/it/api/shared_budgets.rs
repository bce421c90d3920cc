//! Shared rate budgets: two tenant clients, as two nodes, book one family's budget from one
//! ledger (a SQLite file, or PostgreSQL when `CXPIPE_TEST_POSTGRES_URL` is set) and
//! together stay within a fixed-window server's limit while using most of it. Each alone
//! would use the whole limit, so without the shared budget they would send twice the limit.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use cxpipe::api::{Api, TenantConfig};
use cxpipe::ledger::Ledger;
use reqwest::Method;

use super::server::{Behaviour, CLIENT_SECRET, TestServer};
use super::{records, tenant_toml};

/// 10 requests per 500 ms window on the server and in each node's configured budget; two
/// nodes of 4 workers make 12 windows' worth of calls between them.
async fn two_nodes_share_one_budget(ledger_url: &str) {
    let (allowed, window) = (10u64, Duration::from_millis(500));
    let server = TestServer::start(Behaviour {
        window: Some((allowed, window)),
        ..records(1)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), CLIENT_SECRET).unwrap();
    let extra = "[rate_limits]\nfamilies = { limited = { paths = [\"/limited\"], requests = 10, per = \"500ms\" } }";
    let config: TenantConfig = toml::from_str(&tenant_toml(&server.base_url(), extra)).unwrap();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let api = Api::new("acme", &config, dir.path()).unwrap();
        let ledger = Ledger::open_url(ledger_url).await.unwrap();
        assert!(api.share_budgets(Arc::new(ledger)));
        // Warm the token so the first window is not shortened by the token request.
        api.request(Method::GET, "/records", None, None)
            .await
            .unwrap();
        nodes.push(api);
    }
    let per_node = 6 * allowed as usize;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for api in &nodes {
        for worker in 0..4 {
            let api = api.clone();
            tasks.push(tokio::spawn(async move {
                for _ in (worker..per_node).step_by(4) {
                    api.request(Method::GET, "/limited", None, None)
                        .await
                        .unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let windows = (started.elapsed().as_secs_f64() / window.as_secs_f64()).ceil();
    let calls = 2 * per_node;
    let throttled = server.state.throttled.load(SeqCst);
    // Together within the limit: far under one 429 per window (without the shared budget
    // every window would see about ten).
    assert!(
        throttled as f64 <= windows / 3.0,
        "{throttled} 429s in {windows} windows"
    );
    let utilisation = calls as f64 / (windows * allowed as f64);
    assert!(
        utilisation >= 0.85,
        "{calls} calls in {windows} windows of {allowed}: utilisation {utilisation:.3}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_sharing_a_sqlite_ledger_stay_within_one_budget() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.sqlite").display());
    two_nodes_share_one_budget(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_sharing_a_postgres_ledger_stay_within_one_budget() {
    let Some(server) = std::env::var("CXPIPE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED api::shared_budgets::two_nodes_sharing_a_postgres_ledger: \
             CXPIPE_TEST_POSTGRES_URL is not set (`.ci/run` starts a server and sets it)"
        );
        return;
    };
    let schema = format!("cxpipe_it_{}", uuid::Uuid::new_v4().simple());
    admin(&server, &format!("CREATE SCHEMA {schema}")).await;
    let sep = if server.contains('?') { '&' } else { '?' };
    two_nodes_share_one_budget(&format!("{server}{sep}options[search_path]={schema}")).await;
    admin(&server, &format!("DROP SCHEMA {schema} CASCADE")).await;
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
