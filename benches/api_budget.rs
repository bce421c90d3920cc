//! How much of a server's rate budget the api client uses. A loopback server allows N
//! requests per fixed window (429 + `Retry-After` beyond); 8 workers sharing one tenant
//! make 5 × N calls. Reports utilisation (achieved rate / allowed rate) and 429s, with the
//! family budget configured to match the server, and with no budget configured (adaptive:
//! only 429 pauses); then the same against the simulator, counting 429s from
//! `/_sim/stats`. Then walks a million records through the Rhai page iterator and
//! reports records/s and peak RSS before and after (memory stays flat: one page held).
//! Run: `cargo bench --bench api_budget` (or `--profile dev` for a quick look).

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cxpipe::api::{Api, TenantConfig};
use reqwest::Method;

struct Limit {
    allowed: u64,
    window: Duration,
    state: Mutex<(Option<Instant>, u64, u64)>,
    served: AtomicU64,
    throttled: AtomicU64,
}

async fn limited(limit: Arc<Limit>) -> Response {
    let mut state = limit.state.lock().unwrap();
    let now = Instant::now();
    let start = *state.0.get_or_insert(now);
    let index = ((now - start).as_nanos() / limit.window.as_nanos()) as u64;
    if state.1 != index {
        (state.1, state.2) = (index, 0);
    }
    if state.2 >= limit.allowed {
        limit.throttled.fetch_add(1, SeqCst);
        let end = start + limit.window * (index as u32 + 1);
        let secs = end
            .saturating_duration_since(now)
            .as_secs_f64()
            .ceil()
            .max(1.0) as u64;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
        )
            .into_response();
    }
    state.2 += 1;
    limit.served.fetch_add(1, SeqCst);
    "{\"ok\":true}".into_response()
}

const RECORDS: u64 = 1_000_000;

/// `offset`/`limit` pages of a million generated records.
async fn records(
    Query(q): Query<std::collections::HashMap<String, u64>>,
) -> axum::Json<serde_json::Value> {
    let (offset, limit) = (q["offset"], q["limit"]);
    let items: Vec<_> = (offset..(offset + limit).min(RECORDS))
        .map(|i| serde_json::json!({"recordingId": format!("rec-{i:08}"), "sizeBytes": i * 7, "status": "Available"}))
        .collect();
    axum::Json(serde_json::json!({"items": items, "total": RECORDS}))
}

/// Peak and current resident memory of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

async fn walk_a_million() {
    let limit = Arc::new(Limit {
        allowed: 1,
        window: Duration::from_secs(1),
        state: Mutex::new((None, 0, 0)),
        served: AtomicU64::new(0),
        throttled: AtomicU64::new(0),
    });
    let base = serve(limit).await;
    let dir = std::env::temp_dir().join(format!("cxpipe-bench-walk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secret"), "x").unwrap();
    let toml_text = format!(
        "base_url = \"{base}\"\nauth = {{ kind = \"client_credentials\", token_url = \"/token\", client_id = \"c\", client_secret = {{ file = \"secret\" }} }}"
    );
    let config: TenantConfig = toml::from_str(&toml_text).unwrap();
    let api = Api::new("bench", &config, &dir).unwrap();
    let spec: cxpipe::api::paginate::PageSpec = serde_json::from_value(
        serde_json::json!({"style": "offset", "items": "items", "size": 1000}),
    )
    .unwrap();
    let pager = cxpipe::api::paginate::Pager::new(&api, "/records", &spec).unwrap();
    let (peak_before, _) = memory();
    let started = Instant::now();
    let (count, mid_rss) = tokio::task::spawn_blocking(move || {
        let mut count = 0u64;
        let mut mid_rss = 0.0;
        for item in cxpipe::api::pages::Pages::new(pager) {
            let _record = item.unwrap();
            count += 1;
            if count == RECORDS / 2 {
                mid_rss = memory().1;
            }
        }
        (count, mid_rss)
    })
    .await
    .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let (peak_after, rss_after) = memory();
    println!(
        "walk       {count} records in {elapsed:.2}s ({:.0} records/s); peak RSS {peak_before:.1} -> {peak_after:.1} MiB, RSS at half-way {mid_rss:.1} MiB, at end {rss_after:.1} MiB",
        count as f64 / elapsed
    );
}

async fn serve(limit: Arc<Limit>) -> String {
    let app = Router::new()
        .route(
            "/token",
            post(|| async { r#"{"access_token":"t","expires_in":3600}"# }),
        )
        .route("/limited", get(move || limited(limit.clone())))
        .route("/records", get(records));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// The same measure against the simulator (token buckets per family), read from
/// `/_sim/stats`: 5 × N recording searches by 8 workers.
async fn run_sim(allowed: u64, window: Duration, configured: bool) {
    use cxpipe::sim::{SimConfig, SimServer};
    let sim = SimServer::start(
        SimConfig {
            recordings: 100,
            ..SimConfig::default()
        }
        .without_faults(),
    )
    .await
    .unwrap();
    let per = format!("{}ms", window.as_millis());
    sim.control(&serde_json::json!({"rate_limits": {"search": {"requests": allowed, "per": per}}}))
        .unwrap();
    let dir = std::env::temp_dir().join(format!("cxpipe-bench-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secret"), &sim.credentials().client_secret).unwrap();
    let budget = if configured {
        format!(
            "[rate_limits]\nfamilies = {{ search = {{ paths = [\"/api/v2/recording/search\"], requests = {allowed}, per = \"{per}\" }} }}"
        )
    } else {
        String::new()
    };
    let toml_text = format!(
        "base_url = \"{}\"\nmax_retries = 50\nauth = {{ kind = \"client_credentials\", token_url = \"/api/v2/oauth/token\", client_id = \"{}\", client_secret = {{ file = \"secret\" }} }}\n{budget}",
        sim.base_url(),
        sim.credentials().client_id
    );
    let config: TenantConfig = toml::from_str(&toml_text).unwrap();
    let api = Api::new("bench-sim", &config, &dir).unwrap();
    api.request(Method::GET, "/api/v2/recording/none", None, None)
        .await
        .ok(); // token first
    let calls = 5 * allowed as usize;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for _ in (worker..calls).step_by(8) {
                let query = serde_json::json!({"pageSize": 1});
                api.request(Method::GET, "/api/v2/recording/search", Some(&query), None)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let utilisation =
        calls as f64 / elapsed.as_secs_f64() / (allowed as f64 / window.as_secs_f64());
    let stats = sim.stats();
    println!(
        "sim {:<6} N={allowed:<3} per {:>6?}: {calls} calls in {:>7.3}s  utilisation {:>5.1}%  429s {} (from /_sim/stats)",
        if configured { "budget" } else { "adapt" },
        window,
        elapsed.as_secs_f64(),
        utilisation * 100.0,
        stats["throttled_429"],
    );
    sim.shutdown().await;
}

async fn run(allowed: u64, window: Duration, configured: bool) {
    let limit = Arc::new(Limit {
        allowed,
        window,
        state: Mutex::new((None, 0, 0)),
        served: AtomicU64::new(0),
        throttled: AtomicU64::new(0),
    });
    let base = serve(limit.clone()).await;
    let dir = std::env::temp_dir().join(format!("cxpipe-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secret"), "x").unwrap();
    let budget = if configured {
        format!(
            "[rate_limits]\nfamilies = {{ limited = {{ paths = [\"/limited\"], requests = {allowed}, per = \"{}ms\" }} }}",
            window.as_millis()
        )
    } else {
        String::new()
    };
    let toml_text = format!(
        "base_url = \"{base}\"\nmax_retries = 50\nauth = {{ kind = \"client_credentials\", token_url = \"/token\", client_id = \"c\", client_secret = {{ file = \"secret\" }} }}\n{budget}"
    );
    let config: TenantConfig = toml::from_str(&toml_text).unwrap();
    let api = Api::new("bench", &config, &dir).unwrap();
    let calls = 5 * allowed as usize;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for _ in (worker..calls).step_by(8) {
                api.request(Method::GET, "/limited", None, None)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let allowed_rate = allowed as f64 / window.as_secs_f64();
    let utilisation = calls as f64 / elapsed.as_secs_f64() / allowed_rate;
    let windows = (elapsed.as_secs_f64() / window.as_secs_f64()).ceil();
    println!(
        "{:<10} N={allowed:<3} per {:>6?}: {calls} calls in {:>7.3}s  utilisation {:>5.1}%  429s {} over {windows} windows",
        if configured { "budgeted" } else { "adaptive" },
        window,
        elapsed.as_secs_f64(),
        utilisation * 100.0,
        limit.throttled.load(SeqCst),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    run(10, Duration::from_millis(500), true).await;
    run(20, Duration::from_secs(1), true).await;
    run(50, Duration::from_secs(2), true).await;
    run(20, Duration::from_secs(1), false).await;
    run_sim(10, Duration::from_millis(500), true).await;
    run_sim(20, Duration::from_secs(1), true).await;
    run_sim(20, Duration::from_secs(1), false).await;
    walk_a_million().await;
}
