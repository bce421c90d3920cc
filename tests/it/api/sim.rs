//! The judged behaviours against the simulator (`crate::sim`), with its faults on: token
//! sharing and expiry, 401 recovery, bad credentials, budget utilisation measured from
//! `/_sim/stats`, and the seed and real-dialect collections walked exactly once.
//!
//! The simulator cannot revoke a token on demand; the forced 401 comes from a token
//! lifetime of 1.5 s, which it announces as `expires_in: 2` (rounded up), so the client
//! still uses the token when the simulator already refuses it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cxpipe::api::{Api, ApiError, TenantConfig};
use cxpipe::sim::{SimConfig, SimServer};
use reqwest::Method;
use serde_json::{Value, json};

use super::run_script;

/// A simulator with `patch` applied to its knobs (starting from no faults).
async fn sim(recordings: usize, patch: Value) -> SimServer {
    let config = SimConfig {
        recordings,
        interactions: recordings,
        ..SimConfig::default()
    }
    .without_faults();
    let sim = SimServer::start(config).await.unwrap();
    sim.control(&patch).unwrap();
    sim
}

/// The tenant for `sim` with client credentials (secret from a file in `dir`).
fn tenant(sim: &SimServer, dir: &tempfile::TempDir, secret: &str, extra: &str) -> Api {
    std::fs::write(dir.path().join("secret"), secret).unwrap();
    let text = format!(
        r#"
        base_url = "{}"
        max_retries = 8
        backoff_base = "20ms"
        backoff_max = "500ms"
        auth = {{ kind = "client_credentials", token_url = "/api/v2/oauth/token", client_id = "{}", client_secret = {{ file = "secret" }} }}
        {extra}
        "#,
        sim.base_url(),
        sim.credentials().client_id
    );
    let config: TenantConfig = toml::from_str(&text).unwrap();
    Api::new("simco", &config, dir.path()).unwrap()
}

fn stat(sim: &SimServer, name: &str) -> u64 {
    sim.stats()[name].as_u64().unwrap_or(0)
}

/// 8 workers calling `path` until `run_for` has passed; returns the calls made.
async fn workers_for(api: &Api, path: &'static str, run_for: Duration) -> u64 {
    let until = Instant::now() + run_for;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut calls = 0;
            while Instant::now() < until {
                let query = json!({"pageSize": 1});
                api.request(Method::GET, path, Some(&query), None)
                    .await
                    .unwrap();
                calls += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            calls
        }));
    }
    let mut calls = 0;
    for t in tasks {
        calls += t.await.unwrap();
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_workers_get_one_token_per_lifetime_with_faults_on() {
    let sim = sim(
        50,
        json!({"token_ttl": "2s", "error_rate": 0.05, "throttle_rate": 0.02}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let api = tenant(&sim, &dir, &sim.credentials().client_secret.clone(), "");
    let started = Instant::now();
    let calls = workers_for(
        &api,
        "/api/v2/recording/search",
        Duration::from_millis(2500),
    )
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    // Refreshed at 5/6 of 2 s: tokens at 0 and 1.67 s, and one more per 1.67 s if 429
    // pauses kept the last workers past 2.5 s (they may also idle through a refresh).
    let lifetime = 2.0 * 5.0 / 6.0;
    let (least, most) = (
        (2.5f64 / lifetime).ceil() as u64,
        (elapsed / lifetime).ceil() as u64,
    );
    let issued = stat(&sim, "tokens_issued");
    assert!(calls > 20, "{calls}");
    assert!(
        (least.min(most)..=most).contains(&issued),
        "{issued} tokens after {elapsed:.2}s"
    );
    assert_eq!(
        stat(&sim, "unauthorized_401"),
        0,
        "no expired token was ever used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forced_401_costs_one_refresh_and_one_retry() {
    let sim = sim(50, json!({"token_ttl": "1500ms"})).await;
    let dir = tempfile::tempdir().unwrap();
    let api = tenant(&sim, &dir, &sim.credentials().client_secret.clone(), "");
    workers_for(
        &api,
        "/api/v2/recording/search",
        Duration::from_millis(2200),
    )
    .await;
    let refused = stat(&sim, "unauthorized_401");
    assert!(
        (1..=8).contains(&refused),
        "{refused} 401s: at most one per worker"
    );
    assert_eq!(
        stat(&sim, "tokens_issued"),
        2,
        "one refresh for all workers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_credentials_fail_fast_with_a_clear_error() {
    let sim = sim(5, json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let api = tenant(&sim, &dir, "definitely-wrong-secret", "");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            api.request(Method::GET, "/api/v2/recording/search", None, None)
                .await
                .unwrap_err()
        }));
    }
    for t in tasks {
        let err = t.await.unwrap();
        let text = err.to_string();
        assert!(
            matches!(err, ApiError::Auth { .. }) && !err.retryable(),
            "{err:?}"
        );
        assert!(
            text.contains("simco")
                && text.contains(&format!("{}/api/v2/oauth/token", sim.base_url())),
            "{text}"
        );
        assert!(!text.contains("definitely-wrong-secret"), "{text}");
    }
    let token_calls = sim.stats()["requests"]["POST /api/v2/oauth/token"]
        .as_u64()
        .unwrap();
    assert_eq!(token_calls, 1);
}

/// 10 requests per 500 ms on the search family, enforced by the simulator and budgeted by
/// the tenant; 8 workers make 5 × 10 calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_budget_matching_the_simulator_uses_its_rate_without_429s() {
    let limits = json!({"rate_limits": {"search": {"requests": 10, "per": "500ms"}}});
    let sim = sim(50, limits).await;
    let dir = tempfile::tempdir().unwrap();
    let family = r#"rate_limits = { families = { search = { paths = ["/api/v2/recording/search"], requests = 10, per = "500ms" } } }"#;
    let api = tenant(&sim, &dir, &sim.credentials().client_secret.clone(), family);
    api.request(Method::GET, "/api/v2/recording/1", None, None)
        .await
        .ok(); // token first
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for _ in (worker..50).step_by(8) {
                let query = json!({"pageSize": 1});
                api.request(Method::GET, "/api/v2/recording/search", Some(&query), None)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let utilisation = 50.0 / elapsed / 20.0;
    assert_eq!(stat(&sim, "throttled_429"), 0);
    assert!(
        utilisation >= 0.95,
        "utilisation {utilisation:.3} over {elapsed:.2}s"
    );
}

/// Walks `options` over the simulator with 30 % of requests failing, in Rhai; returns the
/// ids (checked unique).
async fn walk(sim: &SimServer, path: &str, options: &str, id: &str) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let api = tenant(sim, &dir, &sim.credentials().client_secret.clone(), "");
    let script = format!(
        r#"let ids = []; for rec in api.paginate("{path}", {options}) {{ ids.push(rec.{id}.to_string()); }} ids"#
    );
    let ids: rhai::Array = run_script(&api, &script).await.unwrap();
    let unique: HashSet<String> = ids.iter().map(|d| d.to_string()).collect();
    assert_eq!(unique.len(), ids.len(), "duplicates walking {path}");
    ids.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_and_real_collections_are_walked_exactly_once_under_faults() {
    let sim = sim(10_007, json!({"error_rate": 0.3})).await;
    let search = walk(
        &sim,
        "/api/v2/recording/search",
        r#"#{ style: "cursor", items: "recordings", next: "nextPageToken", param: "pageToken", size_param: "pageSize", size: 500 }"#,
        "recordingId",
    )
    .await;
    assert_eq!(search, 10_007);
    let pages = walk(
        &sim,
        "/api/v2/recording/search",
        r#"#{ style: "page", method: "POST", body: #{ filters: [] }, items: "recordings", size: 500 }"#,
        "recordingId",
    )
    .await;
    assert_eq!(pages, 10_007);
    let listed = walk(
        &sim,
        "/api/v2/recordings",
        r#"#{ style: "offset", items: "items", size: 1000, total: "total" }"#,
        "id",
    )
    .await;
    let closed = walk(
        &sim,
        "/contacts/completed",
        r#"#{ style: "skip_top", items: "completedContacts", size: 1000, total: "totalRecords" }"#,
        "contactId",
    )
    .await;
    let linked = walk(
        &sim,
        "/contacts/completed",
        r#"#{ style: "next_link", query: #{ top: 1000 }, items: "completedContacts" }"#,
        "contactId",
    )
    .await;
    assert_eq!(linked, closed);
    assert!(closed > 8_000 && listed > 0, "{closed} {listed}");
    let queried = walk(
        &sim,
        "/api/v2/interactions/query",
        r#"#{ style: "cursor", method: "POST", body: #{ filter: "status:closed" }, items: "interactions",
             next: "pagination.next_page", param: "page_token", size_param: "pageSize", size: 500 }"#,
        "id",
    )
    .await;
    assert_eq!(queried, closed, "closed interactions, two dialects");
    assert!(stat(&sim, "server_errors_5xx") > 20);
}
