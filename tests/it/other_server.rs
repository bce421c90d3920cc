//! The download script runs unchanged against another CXone-shaped server: a small,
//! independent implementation of the seed-002 endpoints exactly as the guide writes them
//! (form-body client credentials, `GET` search with a JSON body, presigned-style URLs),
//! making its own choices where the guide is silent (results under `items`, the token sent
//! back as `nextPageToken`). Only the tenant configuration differs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
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

struct Rec {
    id: String,
    status: &'static str,
    size: usize,
    channels: Vec<&'static str>,
}

#[derive(Default)]
struct Other {
    base: Mutex<String>,
    recs: Vec<Rec>,
    tokens: AtomicU64,
    /// Detail polls of the `Processing` recording; it becomes Available after two.
    polls: AtomicU64,
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

impl Other {
    fn status_of(&self, rec: &Rec, count_poll: bool) -> &'static str {
        if rec.status == "Processing" {
            let n = if count_poll {
                self.polls.fetch_add(1, Ordering::SeqCst) + 1
            } else {
                self.polls.load(Ordering::SeqCst)
            };
            if n >= 2 {
                return "Available";
            }
        }
        rec.status
    }

    fn json(&self, rec: &Rec, status: &str) -> Value {
        json!({
            "recordingId": rec.id, "status": status, "createdDate": chrono::Utc::now().to_rfc3339(),
            "sizeBytes": rec.size, "availableChannels": rec.channels,
        })
    }
}

async fn token(State(s): State<Arc<Other>>, Form(form): Form<HashMap<String, String>>) -> Response {
    let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && form.get("client_id").map(String::as_str) == Some("other-client")
        && form.get("client_secret").map(String::as_str) == Some("other-secret");
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "invalid_client" })),
        )
            .into_response();
    }
    let n = s.tokens.fetch_add(1, Ordering::SeqCst);
    Json(json!({ "access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": 3600 }))
        .into_response()
}

async fn search(State(s): State<Arc<Other>>, headers: HeaderMap, body: String) -> Response {
    if !authed(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let body: Value = serde_json::from_str(&body).unwrap_or(json!({}));
    let size = body["pageSize"].as_u64().unwrap_or(100).min(3) as usize;
    let start: usize = body["nextPageToken"]
        .as_str()
        .and_then(|t| t.strip_prefix("after-")?.parse().ok())
        .unwrap_or(0);
    let items: Vec<Value> = s
        .recs
        .iter()
        .skip(start)
        .take(size)
        .map(|r| s.json(r, s.status_of(r, false)))
        .collect();
    let next = (start + size < s.recs.len()).then(|| format!("after-{}", start + size));
    Json(json!({ "items": items, "nextPageToken": next })).into_response()
}

async fn detail(
    State(s): State<Arc<Other>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    match s.recs.iter().find(|r| r.id == id) {
        Some(r) if authed(&headers) => Json(s.json(r, s.status_of(r, true))).into_response(),
        Some(_) => StatusCode::UNAUTHORIZED.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn download(
    State(s): State<Arc<Other>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(r) = s.recs.iter().find(|r| r.id == id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !authed(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let channel = q
        .get("channel")
        .cloned()
        .unwrap_or_else(|| "combined".into());
    let base = s.base.lock().unwrap().clone();
    Json(json!({
        "url": format!("{base}/files/{id}.wav?Signature=abc&Expires=9999999999"),
        "contentType": "audio/wav", "sizeBytes": r.size, "channel": channel,
    }))
    .into_response()
}

async fn file(State(s): State<Arc<Other>>, UrlPath(name): UrlPath<String>) -> Response {
    let id = name.trim_end_matches(".wav");
    match s.recs.iter().find(|r| r.id == id) {
        Some(r) => media(&r.id, r.size).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[test]
fn the_download_script_runs_unchanged_against_another_seed_002_server() {
    let recs = vec![
        Rec {
            id: "o-1".into(),
            status: "Available",
            size: 40_000,
            channels: vec!["combined", "agent", "caller"],
        },
        Rec {
            id: "o-2".into(),
            status: "Available",
            size: 70_001,
            channels: vec!["combined"],
        },
        Rec {
            id: "o-3".into(),
            status: "Processing",
            size: 50_000,
            channels: vec!["combined"],
        },
        Rec {
            id: "o-4".into(),
            status: "Available",
            size: 900,
            channels: vec!["combined"],
        },
        Rec {
            id: "o-5".into(),
            status: "Archived",
            size: 60_000,
            channels: vec!["combined"],
        },
        Rec {
            id: "o-6".into(),
            status: "Available",
            size: 123_457,
            channels: vec!["combined"],
        },
        Rec {
            id: "o-7".into(),
            status: "Available",
            size: 33_333,
            channels: vec!["combined"],
        },
    ];
    let state = Arc::new(Other {
        recs,
        ..Other::default()
    });
    let app = Router::new()
        .route("/api/v2/oauth/token", post(token))
        .route("/api/v2/recording/search", get(search))
        .route("/api/v2/recording/{id}", get(detail))
        .route("/api/v2/recording/{id}/download", get(download))
        .route("/files/{name}", get(file))
        .with_state(state.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    *state.base.lock().unwrap() = base.clone();
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });

    let env = TestEnv::new();
    env.write("secret", "other-secret");
    let config = env.write(
        "cxpipe.toml",
        &format!(
            r#"
[tenants.other]
base_url = "{base}"
auth = {{ kind = "client_credentials", token_url = "/api/v2/oauth/token", client_id = "other-client", client_secret = {{ file = "secret" }}, credentials_in = "body", scope = "recording:read recording:download" }}
[tenants.other.params]
search_items = "items"
search_token_param = "nextPageToken"
processing_poll = "100ms"
[storage.default]
uri = "fs://{}"
"#,
            env.path().join("objects").display()
        ),
    );
    let ran = env.run(
        Path::new(SCRIPT),
        &["--config", config.to_str().unwrap(), "--tenant", "other"],
    );
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let report = &ran.json()["report"];
    assert_eq!(report["downloaded"].as_u64(), Some(5), "{report}");
    assert_eq!(report["skipped"].as_u64(), Some(2), "{report}");
    for rec in state
        .recs
        .iter()
        .filter(|r| r.status != "Archived" && r.size > 1024)
    {
        let path = env
            .path()
            .join(format!("objects/recordings/{}_combined.wav", rec.id));
        let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            Sha256::digest(&stored),
            Sha256::digest(media(&rec.id, rec.size)),
            "{}",
            rec.id
        );
    }
    assert_eq!(
        state.tokens.load(Ordering::SeqCst),
        1,
        "one token for the whole run"
    );
    rt.shutdown_background();
}
