//! The download script against a hostile seed-002 server: recording ids built to rewrite
//! requests and object keys (`\n`, `..`, `\`, `#`, `?`, NUL, ANSI escapes, 5,000 chars), a
//! `fileFormat` that names a manifest, a token endpoint that sends a negative lifetime, a
//! download endpoint that never finishes its headers, media that drips, and a detail
//! endpoint that redirects to another origin. The run must end in bounded time with every
//! honest recording stored once and byte-exact, and every hostile one stored under its own
//! id or quarantined or skipped with a reason; no request may reach a path or parameter
//! that an id rewrote.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{OriginalUri, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::TestEnv;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scripts/download_recordings.rhai"
);

/// How the server treats one recording.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Honest,
    /// `fileFormat: "manifest.json"`.
    ManifestFormat,
    /// The download-URL endpoint accepts the connection and never answers.
    StallHeaders,
    /// The media body sends a few bytes, then one byte every two seconds.
    Drip,
    /// The detail endpoint redirects to another origin; the recording is `Processing` in
    /// search so the script must ask for its detail.
    CrossOriginRedirect,
}

struct Rec {
    id: String,
    size: usize,
    mode: Mode,
}

#[derive(Default)]
struct Hostile {
    base: Mutex<String>,
    evil_base: Mutex<String>,
    recs: Vec<Rec>,
    /// Requests that reached no route, or a route with parameters an id injected.
    anomalies: Mutex<Vec<String>>,
    /// Media transfers served in full, by recording index.
    served: Mutex<BTreeMap<usize, u64>>,
    /// Requests the other origin answered.
    evil_hits: AtomicU64,
    tokens: AtomicU64,
}

fn media(id: &str, size: usize) -> Vec<u8> {
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&((size - 8) as u32).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    let seed = id
        .bytes()
        .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    out.extend((0..size - 12).map(|i| seed.wrapping_add((i % 251) as u8)));
    out
}

fn authed(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer tok-"))
}

impl Hostile {
    fn find(&self, id: &str) -> Option<(usize, &Rec)> {
        self.recs.iter().enumerate().find(|(_, r)| r.id == id)
    }

    fn anomaly(&self, what: String) {
        self.anomalies.lock().unwrap().push(what);
    }

    fn json(&self, rec: &Rec, status: &str) -> Value {
        let mut v = json!({
            "recordingId": rec.id, "status": status,
            "createdDate": chrono::Utc::now().to_rfc3339(),
            "sizeBytes": rec.size, "availableChannels": ["combined"],
        });
        if rec.mode == Mode::ManifestFormat {
            v["fileFormat"] = json!("manifest.json");
        }
        v
    }
}

async fn token(State(s): State<Arc<Hostile>>) -> Response {
    let n = s.tokens.fetch_add(1, Ordering::SeqCst);
    // A lifetime no client may turn into a Duration as it stands.
    Json(json!({ "access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": -5 }))
        .into_response()
}

async fn search(State(s): State<Arc<Hostile>>, headers: HeaderMap, body: String) -> Response {
    if !authed(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let body: Value = serde_json::from_str(&body).unwrap_or(json!({}));
    let size = body["pageSize"].as_u64().unwrap_or(100).min(4) as usize;
    let start: usize = body["pageToken"]
        .as_str()
        .and_then(|t| t.strip_prefix("after-")?.parse().ok())
        .unwrap_or(0);
    let items: Vec<Value> = s
        .recs
        .iter()
        .skip(start)
        .take(size)
        .map(|r| {
            let status = if r.mode == Mode::CrossOriginRedirect {
                "Processing"
            } else {
                "Available"
            };
            s.json(r, status)
        })
        .collect();
    let next = (start + size < s.recs.len()).then(|| format!("after-{}", start + size));
    Json(json!({ "recordings": items, "nextPageToken": next })).into_response()
}

async fn detail(
    State(s): State<Arc<Hostile>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if !authed(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some((i, rec)) = s.find(&id) else {
        s.anomaly(format!("detail of unknown id {id:?}"));
        return StatusCode::NOT_FOUND.into_response();
    };
    if rec.mode == Mode::CrossOriginRedirect {
        let evil = s.evil_base.lock().unwrap().clone();
        return (
            StatusCode::FOUND,
            [(header::LOCATION, format!("{evil}/recording/{i}"))],
        )
            .into_response();
    }
    Json(s.json(rec, "Available")).into_response()
}

async fn download(
    State(s): State<Arc<Hostile>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    if !authed(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some((i, rec)) = s.find(&id) else {
        s.anomaly(format!("download URL of unknown id {id:?}"));
        return StatusCode::NOT_FOUND.into_response();
    };
    if q.len() != 1 || q[0] != ("channel".to_string(), "combined".to_string()) {
        s.anomaly(format!("download URL of {id:?} with query {q:?}"));
    }
    if rec.mode == Mode::StallHeaders {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let base = s.base.lock().unwrap().clone();
    Json(json!({
        "url": format!("{base}/files/{i}?Signature=abc&Expires=9999999999"),
        "contentType": "audio/wav", "sizeBytes": rec.size, "channel": "combined",
    }))
    .into_response()
}

async fn file(State(s): State<Arc<Hostile>>, UrlPath(index): UrlPath<usize>) -> Response {
    let Some(rec) = s.recs.get(index) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let bytes = media(&rec.id, rec.size);
    if rec.mode == Mode::Drip {
        let stream = futures::stream::unfold(0usize, move |sent| {
            let bytes = bytes.clone();
            async move {
                if sent >= bytes.len() {
                    return None;
                }
                let n = if sent == 0 { 64 } else { 1 };
                if sent > 0 {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                let chunk = bytes::Bytes::copy_from_slice(&bytes[sent..sent + n]);
                Some((Ok::<_, std::io::Error>(chunk), sent + n))
            }
        });
        return (
            [(header::CONTENT_LENGTH, rec.size.to_string())],
            Body::from_stream(stream),
        )
            .into_response();
    }
    *s.served.lock().unwrap().entry(index).or_default() += 1;
    bytes.into_response()
}

async fn unrouted(State(s): State<Arc<Hostile>>, OriginalUri(uri): OriginalUri) -> Response {
    s.anomaly(format!("unrouted request {uri}"));
    StatusCode::NOT_FOUND.into_response()
}

/// The other origin: answers anything with a plausible recording of a different size.
async fn evil(State(s): State<Arc<Hostile>>) -> Response {
    s.evil_hits.fetch_add(1, Ordering::SeqCst);
    Json(
        json!({ "recordingId": "evil", "status": "Available", "sizeBytes": 5000,
        "createdDate": chrono::Utc::now().to_rfc3339(), "availableChannels": ["combined"] }),
    )
    .into_response()
}

fn recordings() -> Vec<Rec> {
    let rec = |id: &str, size: usize, mode: Mode| Rec {
        id: id.to_string(),
        size,
        mode,
    };
    vec![
        rec("h-1", 40_000, Mode::Honest),
        rec("newline", 50_001, Mode::Honest),
        rec("new\nline", 60_002, Mode::Honest),
        rec("..", 30_003, Mode::Honest),
        rec("a\\b", 30_004, Mode::Honest),
        rec("x#frag", 30_005, Mode::Honest),
        rec("y?channel=agent", 30_006, Mode::Honest),
        rec("nul\0id", 30_007, Mode::Honest),
        rec(&"L".repeat(5000), 30_008, Mode::Honest),
        rec("\x1b[31mred\x1b[0m", 30_009, Mode::Honest),
        rec("h-2", 70_010, Mode::Honest),
        rec("fmt-1", 30_011, Mode::ManifestFormat),
        rec("stall-1", 30_012, Mode::StallHeaders),
        rec("drip-1", 30_013, Mode::Drip),
        rec("redir-1", 30_014, Mode::CrossOriginRedirect),
        rec("h-3", 123_457, Mode::Honest),
    ]
}

/// Ids whose media must arrive, byte-exact, under `recordings/{id}_combined.wav`.
const HONEST: [&str; 4] = ["h-1", "newline", "h-2", "h-3"];

#[test]
fn a_hostile_server_cannot_rewrite_requests_or_keys_and_the_run_ends() {
    let state = Arc::new(Hostile {
        recs: recordings(),
        ..Hostile::default()
    });
    let app = Router::new()
        .route("/api/v2/oauth/token", post(token))
        .route("/api/v2/recording/search", get(search))
        .route("/api/v2/recording/{id}", get(detail))
        .route("/api/v2/recording/{id}/download", get(download))
        .route("/files/{index}", get(file))
        .fallback(unrouted)
        .with_state(state.clone());
    let evil_app = Router::new().fallback(evil).with_state(state.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = crate::harness::serve_on(&rt, app);
    let evil_base = crate::harness::serve_on(&rt, evil_app);
    *state.base.lock().unwrap() = base.clone();
    *state.evil_base.lock().unwrap() = evil_base;

    let env = TestEnv::new();
    env.write("secret", "hostile-secret");
    let objects = env.path().join("objects");
    let config = env.write(
        "cxpipe.toml",
        &format!(
            r#"
[tenants.hostile]
base_url = "{base}"
auth = {{ kind = "client_credentials", token_url = "/api/v2/oauth/token", client_id = "c", client_secret = {{ file = "secret" }} }}
max_retries = 1
backoff_base = "50ms"
header_timeout = "2s"
[tenants.hostile.params]
processing_poll = "100ms"
fetch_tries = 2
min_progress_bytes = 1024
min_progress_window = "2s"
[storage.default]
uri = "fs://{}"
"#,
            objects.display()
        ),
    );
    let started = Instant::now();
    let ran = env.run(
        Path::new(SCRIPT),
        &["--config", config.to_str().unwrap(), "--tenant", "hostile"],
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(150),
        "the run took {took:?}\n{}",
        ran.stderr
    );
    // Some items are quarantined, so the run exits 1; it must not crash (2) or hang.
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        state.anomalies.lock().unwrap().is_empty(),
        "ids rewrote requests: {:?}",
        state.anomalies.lock().unwrap()
    );
    assert_eq!(
        state.evil_hits.load(Ordering::SeqCst),
        0,
        "a cross-origin redirect was followed"
    );

    for (index, rec) in state.recs.iter().enumerate() {
        if !HONEST.contains(&rec.id.as_str()) {
            continue;
        }
        let path = objects.join(format!("recordings/{}_combined.wav", rec.id));
        let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            Sha256::digest(&stored),
            Sha256::digest(media(&rec.id, rec.size)),
            "{}",
            rec.id
        );
        assert_eq!(
            state.served.lock().unwrap().get(&index),
            Some(&1),
            "{} transferred once",
            rec.id
        );
    }

    // Every item ended: done under its own id, or skipped or quarantined with a reason.
    let rows = rt.block_on(async {
        let ledger = cxpipe::ledger::Ledger::open_dir(&env.state_dir())
            .await
            .unwrap();
        ledger.list_items(&Default::default(), 1000).await.unwrap()
    });
    let by_key: HashMap<&str, _> = rows.iter().map(|r| (r.key.as_str(), r)).collect();
    for rec in &state.recs {
        let row = by_key
            .get(rec.id.as_str())
            .unwrap_or_else(|| panic!("item {:?} missing from the ledger", rec.id));
        match row.state.as_str() {
            "done" => {
                let result: Value = serde_json::from_str(row.result.as_deref().unwrap()).unwrap();
                let key = result["key"].as_str().unwrap();
                assert!(
                    !key.ends_with(".manifest.json"),
                    "{:?} stored as a manifest",
                    rec.id
                );
                let stored = std::fs::read(objects.join(key)).unwrap();
                assert_eq!(
                    Sha256::digest(&stored),
                    Sha256::digest(media(&rec.id, rec.size)),
                    "{:?} stored another recording's media",
                    rec.id
                );
            }
            "skipped" | "quarantined" => {
                let reason = row.last_error.as_deref().or(row.result.as_deref());
                assert!(
                    reason.is_some_and(|r| !r.trim().is_empty()),
                    "{:?} ended {} without a reason",
                    rec.id,
                    row.state
                );
            }
            other => panic!("{:?} left {other}: {row:?}", rec.id),
        }
    }
    for must_fail in ["..", "stall-1", "drip-1", "redir-1", "fmt-1"] {
        let state = &by_key[must_fail].state;
        assert!(
            state == "quarantined" || state == "skipped",
            "{must_fail:?} ended {state}"
        );
    }
    // No control character reaches the terminal raw.
    assert!(
        !ran.stderr.contains('\x1b') && !ran.stdout.contains('\x1b'),
        "an escape sequence was printed raw"
    );
    rt.shutdown_background();
}
