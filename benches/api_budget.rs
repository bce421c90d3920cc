//! How much of a server's rate budget the api client uses. A loopback server allows N
//! requests per fixed window (429 + `Retry-After` beyond); 8 workers sharing one tenant
//! make 5 × N calls. Reports utilisation (achieved rate / allowed rate) and 429s, with the
//! family budget configured to match the server, and with no budget configured (adaptive:
//! only 429 pauses); then the same against the simulator, counting 429s from
//! `/_sim/stats`. Then walks a million records through the Rhai page iterator and
//! reports records/s and peak RSS before and after (memory stays flat: one page held).
//! Last, three minutes with no configured family against four servers at once (fixed
//! window without headers, with `X-RateLimit-*`, with IETF `RateLimit-*` + policy, and the
//! simulator's token bucket): utilisation and 429s overall and after the first minute.
//! Run: `cargo bench --bench api_budget` (or `--profile dev` for a quick look;
//! `CXPIPE_BENCH_ADAPTIVE_ONLY=1` runs the three-minute part alone).

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

/// Which rate-limit headers the loopback server sends with every answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Headers {
    None,
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset` (seconds, rounded up).
    XRateLimit,
    /// `RateLimit-Limit`, `-Remaining`, `-Reset` and `RateLimit-Policy: N;w=W`.
    Ietf,
}

struct Limit {
    allowed: u64,
    window: Duration,
    headers: Headers,
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
    let end = start + limit.window * (index as u32 + 1);
    let secs = end
        .saturating_duration_since(now)
        .as_secs_f64()
        .ceil()
        .max(1.0) as u64;
    let throttled = state.2 >= limit.allowed;
    if !throttled {
        state.2 += 1;
        limit.served.fetch_add(1, SeqCst);
    }
    let remaining = limit.allowed - state.2.min(limit.allowed);
    let mut response = if throttled {
        limit.throttled.fetch_add(1, SeqCst);
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
        )
            .into_response()
    } else {
        "{\"ok\":true}".into_response()
    };
    let prefix = match limit.headers {
        Headers::None => return response,
        Headers::XRateLimit => "x-ratelimit",
        Headers::Ietf => "ratelimit",
    };
    let h = response.headers_mut();
    let mut put = |name: String, value: String| {
        h.insert(
            axum::http::HeaderName::try_from(name).unwrap(),
            value.parse().unwrap(),
        );
    };
    put(format!("{prefix}-limit"), limit.allowed.to_string());
    put(format!("{prefix}-remaining"), remaining.to_string());
    put(format!("{prefix}-reset"), secs.to_string());
    if limit.headers == Headers::Ietf {
        let w = limit.window.as_secs().max(1);
        put(
            "ratelimit-policy".into(),
            format!("{};w={w}", limit.allowed),
        );
    }
    response
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
        headers: Headers::None,
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
        "[rate_limits]\nadaptive = true".to_string()
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
        headers: Headers::None,
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
        "[rate_limits]\nadaptive = true".to_string()
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

/// The server of a long adaptive run.
enum Target {
    Loopback(Arc<Limit>),
    Sim(cxpipe::sim::SimServer),
}

impl Target {
    fn throttled(&self) -> u64 {
        match self {
            Target::Loopback(limit) => limit.throttled.load(SeqCst),
            Target::Sim(sim) => sim.stats()["throttled_429"].as_u64().unwrap_or(0),
        }
    }
}

/// With NO configured family (the client learns the rate): 8 workers call for `total`;
/// utilisation and 429s over the whole run and after the first minute. `headers`: what
/// the loopback server sends; `None` for the simulator (token buckets, no headers).
async fn adaptive_long(
    loopback: Option<Headers>,
    allowed: u64,
    window: Duration,
    total: Duration,
) -> String {
    let settle = Duration::from_secs(60);
    let label = match loopback {
        Some(h) => format!("fixed window, headers {h:?}"),
        None => "simulator token bucket, no headers".to_string(),
    };
    let dir = std::env::temp_dir().join(format!(
        "cxpipe-bench-long-{}-{}",
        std::process::id(),
        label.replace([' ', ','], "")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (target, base, token_url, client_id, path) = match loopback {
        Some(headers) => {
            let limit = Arc::new(Limit {
                allowed,
                window,
                headers,
                state: Mutex::new((None, 0, 0)),
                served: AtomicU64::new(0),
                throttled: AtomicU64::new(0),
            });
            let base = serve(limit.clone()).await;
            std::fs::write(dir.join("secret"), "x").unwrap();
            (
                Target::Loopback(limit),
                base,
                "/token",
                "c".to_string(),
                "/limited",
            )
        }
        None => {
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
            sim.control(
                &serde_json::json!({"rate_limits": {"search": {"requests": allowed, "per": per}}}),
            )
            .unwrap();
            std::fs::write(dir.join("secret"), &sim.credentials().client_secret).unwrap();
            let (base, id) = (
                sim.base_url().to_string(),
                sim.credentials().client_id.clone(),
            );
            (
                Target::Sim(sim),
                base,
                "/api/v2/oauth/token",
                id,
                "/api/v2/recording/search",
            )
        }
    };
    let toml_text = format!(
        "base_url = \"{base}\"\nmax_retries = 50\nrate_limits = {{ adaptive = true }}\nauth = {{ kind = \"client_credentials\", token_url = \"{token_url}\", client_id = \"{client_id}\", client_secret = {{ file = \"secret\" }} }}\n"
    );
    let config: TenantConfig = toml::from_str(&toml_text).unwrap();
    let api = Api::new("bench-long", &config, &dir).unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let end = started + total;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (api, done) = (api.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let query = serde_json::json!({"pageSize": 1});
                api.request(Method::GET, path, Some(&query), None)
                    .await
                    .unwrap();
                done.fetch_add(1, SeqCst);
            }
        }));
    }
    tokio::time::sleep(settle).await;
    let (done_at_settle, throttled_at_settle) = (done.load(SeqCst), target.throttled());
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = allowed as f64 / window.as_secs_f64();
    let (done_all, throttled_all) = (done.load(SeqCst), target.throttled());
    let late_secs = elapsed - settle.as_secs_f64();
    let late_windows = late_secs / window.as_secs_f64();
    let late_throttled = throttled_all - throttled_at_settle;
    if let Target::Sim(sim) = target {
        sim.shutdown().await;
    }
    format!(
        "adaptive {label:<36} N={allowed} per {window:?}, {:.0}s: utilisation {:>5.1}% overall, {:>5.1}% after the first minute; 429s {throttled_all} overall, {late_throttled} in the {late_windows:.0} windows after the first minute ({:.3} per window)",
        elapsed,
        done_all as f64 / elapsed / rate * 100.0,
        (done_all - done_at_settle) as f64 / late_secs / rate * 100.0,
        late_throttled as f64 / late_windows,
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::var_os("CXPIPE_BENCH_ADAPTIVE_ONLY").is_none() {
        short_runs().await;
    }
    // Four servers at once (each waits on its own budget, so they do not compete): 3 min.
    let total = Duration::from_secs(180);
    let second = Duration::from_secs(1);
    let lines = tokio::join!(
        adaptive_long(Some(Headers::None), 20, second, total),
        adaptive_long(Some(Headers::XRateLimit), 20, second, total),
        adaptive_long(Some(Headers::Ietf), 20, second, total),
        adaptive_long(None, 20, second, total),
    );
    for line in [lines.0, lines.1, lines.2, lines.3] {
        println!("{line}");
    }
}

async fn short_runs() {
    run(10, Duration::from_millis(500), true).await;
    run(20, Duration::from_secs(1), true).await;
    run(50, Duration::from_secs(2), true).await;
    run(20, Duration::from_secs(1), false).await;
    run_sim(10, Duration::from_millis(500), true).await;
    run_sim(20, Duration::from_secs(1), true).await;
    run_sim(20, Duration::from_secs(1), false).await;
    walk_a_million().await;
}
