//! The compliance-export script runs unchanged against another seed-001 server: a small,
//! independent implementation of the guide's export flow making its own choices where the
//! guide is silent: the export at `/compliance/v2/exports` taking `interactionIds` (at most
//! 2), the job id under `jobId`, lower-case states (`queued`, `done`, `error`) under
//! `status` with the reason at `error.detail`, the files under `results` as
//! `{ recording, mediaUrl, sha256 (upper case), container }`, and the legal-hold platform
//! at `/hooks/legal-hold`, down (503) for its first two calls. Only the tenant
//! configuration differs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::compliance::{SCRIPT, assert_audit_verifies};
use crate::harness::TestEnv;

const BATCH_CAP: usize = 2;

struct Job {
    ids: Vec<String>,
    polls: u32,
    fails: bool,
}

#[derive(Default)]
struct Other {
    base: String,
    jobs: Mutex<BTreeMap<u64, Job>>,
    next_job: AtomicU64,
    /// Interaction whose first export job fails for a transient reason.
    fail_first_job_of: String,
    legal_hold_calls: AtomicU64,
    notifications: Mutex<Vec<Value>>,
    downloads: Mutex<BTreeMap<String, u32>>,
}

/// A small WAV file whose bytes depend on `id`.
fn media(id: &str) -> Vec<u8> {
    let data: Vec<u8> = id.bytes().cycle().take(4000).collect();
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&[1, 0, 1, 0]);
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16000u32.to_le_bytes());
    out.extend_from_slice(&[2, 0, 16, 0]);
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

fn authed(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "Bearer exp-token")
}

async fn token(Form(form): Form<HashMap<String, String>>) -> Response {
    if form.get("client_secret").map(String::as_str) != Some("exp-secret") {
        return (StatusCode::UNAUTHORIZED, "invalid_client").into_response();
    }
    Json(json!({ "access_token": "exp-token", "token_type": "Bearer", "expires_in": 3600 }))
        .into_response()
}

async fn create(
    State(s): State<Arc<Other>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !authed(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let ids: Vec<String> = body["interactionIds"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() || ids.len() > BATCH_CAP || body["format"] != "mp3" {
        return (
            StatusCode::BAD_REQUEST,
            format!("1..={BATCH_CAP} interactionIds and mp3 only"),
        )
            .into_response();
    }
    let mut jobs = s.jobs.lock().unwrap();
    let fails = ids.contains(&s.fail_first_job_of)
        && !jobs.values().any(|j| j.ids.contains(&s.fail_first_job_of));
    let id = 7000 + s.next_job.fetch_add(1, Ordering::SeqCst);
    jobs.insert(
        id,
        Job {
            ids,
            polls: 0,
            fails,
        },
    );
    (
        StatusCode::CREATED,
        Json(json!({ "jobId": id, "status": "queued" })),
    )
        .into_response()
}

async fn status(
    State(s): State<Arc<Other>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<u64>,
) -> Response {
    if !authed(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut jobs = s.jobs.lock().unwrap();
    let Some(job) = jobs.get_mut(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    job.polls += 1;
    let body = match (job.polls, job.fails) {
        (1, _) => json!({ "jobId": id, "status": "queued" }),
        (_, true) => {
            json!({ "jobId": id, "status": "error", "error": { "detail": "storage node temporarily unavailable" } })
        }
        (_, false) => {
            json!({ "jobId": id, "status": "done", "results": job.ids.iter().map(|i| json!({
            "recording": i, "mediaUrl": format!("{}/media/{i}", s.base),
            "sha256": hex::encode(Sha256::digest(media(i))).to_uppercase(), "container": "wav",
        })).collect::<Vec<_>>() })
        }
    };
    Json(body).into_response()
}

async fn download(State(s): State<Arc<Other>>, UrlPath(id): UrlPath<String>) -> Response {
    *s.downloads.lock().unwrap().entry(id.clone()).or_default() += 1;
    ([("content-type", "audio/wav")], media(&id)).into_response()
}

async fn legal_hold(
    State(s): State<Arc<Other>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !authed(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if s.legal_hold_calls.fetch_add(1, Ordering::SeqCst) < 2 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "legal hold platform is down",
        )
            .into_response();
    }
    s.notifications.lock().unwrap().push(body);
    StatusCode::NO_CONTENT.into_response()
}

#[test]
fn the_compliance_script_runs_unchanged_against_another_seed_001_server() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(Other {
        base: base.clone(),
        fail_first_job_of: "int-b".into(),
        ..Other::default()
    });
    let app = Router::new()
        .route("/oauth2/token", post(token))
        .route("/compliance/v2/exports", post(create))
        .route("/compliance/v2/exports/{id}/status", get(status))
        .route("/media/{id}", get(download))
        .route("/hooks/legal-hold", post(legal_hold))
        .with_state(state.clone());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });

    let env = TestEnv::new();
    env.write("secret", "exp-secret");
    let config = env.write(
        "cxpipe.toml",
        &format!(
            r#"
[tenants.other]
base_url = "{base}"
backoff_base = "20ms"
auth = {{ kind = "client_credentials", token_url = "/oauth2/token", client_id = "exp-client", client_secret = {{ file = "secret" }}, credentials_in = "body" }}
[tenants.other.params]
interaction_ids = ["int-c", "int-a", "int-e", "int-b", "int-d"]
format = "mp3"
formats = ["mp3"]
jurisdiction = "gb-en"
date_start = "2024-01-01T00:00:00+01:00"
date_end = "2024-02-01T00:00:00Z"
batch_size = 2
export_path = "/compliance/v2/exports"
ids_field = "interactionIds"
job_id_field = "jobId"
job_state_field = "status"
job_error_field = "error.detail"
job_done = ["done"]
job_failed = ["error"]
files_field = "results"
file_id_field = "recording"
file_url_field = "mediaUrl"
checksum_field = "sha256"
file_format_field = "container"
legal_hold_url = "/hooks/legal-hold"
poll_every = "20ms"
[storage.default]
uri = "fs://{}"
"#,
            env.path().join("objects").display()
        ),
    );
    let run = || {
        env.run(
            Path::new(SCRIPT),
            &["--config", config.to_str().unwrap(), "--tenant", "other"],
        )
    };
    let ran = run();
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let report = &ran.json()["report"];
    assert_eq!(report["batches"]["exported"], 3, "{report}");
    assert_eq!(report["jobs"]["completed"], 3, "{report}");
    assert_eq!(report["jobs"]["failed"], 1, "{report}");
    assert_eq!(report["metrics"]["filesValidated"], 5, "{report}");

    let jobs: Vec<Vec<String>> = state
        .jobs
        .lock()
        .unwrap()
        .values()
        .map(|j| j.ids.clone())
        .collect();
    assert_eq!(
        jobs.len(),
        4,
        "batches of 2, the failed one submitted again: {jobs:?}"
    );
    let mut sorted = jobs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "{jobs:?}");
    assert!(jobs.iter().all(|ids| ids.len() <= BATCH_CAP));
    assert_eq!(
        jobs.iter()
            .filter(|ids| ids.contains(&"int-b".to_string()))
            .count(),
        2,
        "{jobs:?}"
    );
    for id in ["int-a", "int-b", "int-c", "int-d", "int-e"] {
        let path = env
            .path()
            .join(format!("objects/compliance/gb-en/{id}.wav"));
        assert_eq!(std::fs::read(&path).unwrap(), media(id), "{path:?}");
    }
    assert!(state.downloads.lock().unwrap().values().all(|n| *n == 1));
    // Down twice, then every batch notified exactly once.
    assert_eq!(state.legal_hold_calls.load(Ordering::SeqCst), 5);
    let notes = state.notifications.lock().unwrap().clone();
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(
        notes.iter().all(|n| n["status"] == "COMPLETED"),
        "{notes:?}"
    );
    assert_audit_verifies(&env);

    let again = run();
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.json()["summary"]["done"], 0);
    assert_eq!(state.jobs.lock().unwrap().len(), 4, "no job on a re-run");
    assert_eq!(state.notifications.lock().unwrap().len(), 3);
    rt.shutdown_background();
}
