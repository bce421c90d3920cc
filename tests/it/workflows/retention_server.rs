//! The retention script runs unchanged against another seed-000 server: a small,
//! independent implementation of the guide's endpoints exactly as it writes them, making
//! its own choices where the guide is silent: numeric ids, start times in epoch
//! milliseconds, pages capped at 7 whatever `limit` asks with the count under `totalCount`,
//! frameworks spelled `pci-dss`, lower-case job statuses (`queued`, `running`, `completed`,
//! `failed`). Only the tenant configuration differs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::retention::SCRIPT;
use crate::harness::TestEnv;

const PAGE_CAP: usize = 7;

#[derive(Clone)]
struct Rec {
    id: u64,
    agent: u64,
    start_ms: i64,
    duration: u64,
    size: u64,
    retention: u32,
    held: bool,
}

#[derive(Default)]
struct Job {
    recording: u64,
    polls: u32,
    fails: bool,
}

#[derive(Default)]
struct Other {
    recs: Mutex<Vec<Rec>>,
    jobs: Mutex<BTreeMap<u64, Job>>,
    next_job: AtomicU64,
    tokens: AtomicU64,
    /// Retention PUTs per recording: (applied, refused).
    puts: Mutex<BTreeMap<u64, (u32, u32)>>,
    /// Recording whose first archival job fails.
    fail_first_job_of: u64,
}

fn authed(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer other-"))
}

async fn token(State(s): State<Arc<Other>>, Form(form): Form<HashMap<String, String>>) -> Response {
    let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && form.get("client_id").map(String::as_str) == Some("ret-client")
        && form.get("client_secret").map(String::as_str) == Some("ret-secret");
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "invalid_client" })),
        )
            .into_response();
    }
    let n = s.tokens.fetch_add(1, Ordering::SeqCst);
    Json(
        json!({ "access_token": format!("other-{n}"), "token_type": "Bearer", "expires_in": 3600 }),
    )
    .into_response()
}

async fn list(
    State(s): State<Arc<Other>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authed(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if q.get("status").map(String::as_str) != Some("completed") {
        return (
            StatusCode::BAD_REQUEST,
            "this server lists completed recordings only",
        )
            .into_response();
    }
    let offset: usize = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let limit: usize = q.get("limit").and_then(|v| v.parse().ok()).unwrap_or(10);
    let recs = s.recs.lock().unwrap();
    let items: Vec<Value> = recs
        .iter()
        .skip(offset)
        .take(limit.min(PAGE_CAP))
        .map(|r| {
            json!({
                "id": r.id, "startTimestamp": r.start_ms, "endTimestamp": r.start_ms + r.duration as i64 * 1000,
                "duration": r.duration, "fileSize": r.size, "channelType": "PSTN",
                "agentId": r.agent, "currentRetentionDays": r.retention, "status": "completed",
            })
        })
        .collect();
    Json(json!({ "items": items, "totalCount": recs.len() })).into_response()
}

async fn policies(headers: HeaderMap) -> Response {
    if !authed(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(json!([
        { "id": 1, "name": "Health", "retentionDays": 2190, "regulatoryFramework": "hipaa", "archivalDestination": "cxone://cold/health" },
        { "id": 2, "name": "PCI_DSS_Standard", "retentionDays": 400, "regulatoryFramework": "pci-dss", "archivalDestination": "cxone://cold/pci" },
        { "id": 3, "name": "EU short", "retentionDays": 30, "regulatoryFramework": "gdpr", "archivalDestination": "cxone://cold/eu" },
    ]))
    .into_response()
}

async fn set_retention(
    State(s): State<Arc<Other>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<u64>,
    Json(body): Json<Value>,
) -> Response {
    if !authed(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut recs = s.recs.lock().unwrap();
    let Some(rec) = recs.iter_mut().find(|r| r.id == id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut puts = s.puts.lock().unwrap();
    let entry = puts.entry(id).or_default();
    if rec.held {
        entry.1 += 1;
        return (
            StatusCode::CONFLICT,
            Json(json!({ "message": "legal hold" })),
        )
            .into_response();
    }
    entry.0 += 1;
    rec.retention = body["retentionDays"].as_u64().unwrap_or(0) as u32;
    Json(json!({ "recordingId": id, "retentionDays": rec.retention, "status": "applied" }))
        .into_response()
}

async fn create_job(
    State(s): State<Arc<Other>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !authed(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(recording) = body["recordingId"].as_str().and_then(|v| v.parse().ok()) else {
        return (StatusCode::BAD_REQUEST, "recordingId").into_response();
    };
    let id = s.next_job.fetch_add(1, Ordering::SeqCst) + 1;
    let mut jobs = s.jobs.lock().unwrap();
    let fails =
        recording == s.fail_first_job_of && !jobs.values().any(|j| j.recording == recording);
    jobs.insert(
        id,
        Job {
            recording,
            polls: 0,
            fails,
        },
    );
    (
        StatusCode::ACCEPTED,
        Json(json!({ "jobId": id, "status": "queued" })),
    )
        .into_response()
}

async fn job_status(
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
        (2, _) => json!({ "jobId": id, "status": "running" }),
        (_, true) => {
            json!({ "jobId": id, "status": "failed", "failureReason": "bucket quota exceeded" })
        }
        (_, false) => {
            json!({ "jobId": id, "status": "completed", "archivedSizeBytes": 1000 + job.recording })
        }
    };
    Json(body).into_response()
}

fn recordings() -> Vec<Rec> {
    let base = 1_763_000_000_000i64;
    let mut recs: Vec<Rec> = (0..12u64)
        .map(|i| Rec {
            id: 1001 + i,
            agent: 500 + i % 4,
            start_ms: base + i as i64 * 60_000,
            duration: 60 + i,
            size: 100_000 + i * 10,
            retention: 90,
            held: false,
        })
        .collect();
    recs[3].held = true; // 1004: 409
    recs[6] = Rec {
        id: 1007,
        ..recs[2].clone()
    }; // 1007 duplicates 1003
    recs[8].duration = 0; // 1009: nothing to retain
    recs[10].retention = 400; // 1011: already at the policy's days, no PUT
    recs
}

#[test]
fn the_retention_script_runs_unchanged_against_another_seed_000_server() {
    let state = Arc::new(Other {
        recs: Mutex::new(recordings()),
        fail_first_job_of: 1005,
        ..Other::default()
    });
    let app = Router::new()
        .route("/oauth/token", post(token))
        .route("/api/v2/recordings", get(list))
        .route("/api/v2/recordings/policies", get(policies))
        .route("/api/v2/recordings/{id}/retention", put(set_retention))
        .route("/api/v2/archival/jobs", post(create_job))
        .route("/api/v2/archival/jobs/{id}", get(job_status))
        .with_state(state.clone());
    let (rt, base) = crate::harness::serve(app);

    let env = TestEnv::new();
    env.write("secret", "ret-secret");
    let config = env.write(
        "cxpipe.toml",
        &format!(
            r#"
[tenants.other]
base_url = "{base}"
auth = {{ kind = "client_credentials", token_url = "/oauth/token", client_id = "ret-client", client_secret = {{ file = "secret" }}, credentials_in = "body" }}
[tenants.other.params]
list_total = "totalCount"
poll_every = "50ms"
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
    assert_eq!(report["policy"]["id"], "2", "chosen by name: {report}");
    assert_eq!(
        report["lifecycle"]["recordingsListed"], 12,
        "past the page cap: {report}"
    );
    assert_eq!(report["lifecycle"]["archived"], 9, "{report}");
    assert_eq!(
        report["lifecycle"]["skippedByReason"],
        json!({ "duplicate recording": 1, "legal hold": 1, "no duration or file size": 1 })
    );
    assert_eq!(report["archivalMetrics"]["successfulJobs"], 9);
    assert_eq!(report["archivalMetrics"]["failedJobs"], 1);
    assert_eq!(
        report["archivalMetrics"]["archivedBytes"],
        (0..12u64)
            .filter(|i| ![3, 6, 8].contains(i))
            .map(|i| 1000 + 1001 + i)
            .sum::<u64>()
    );
    let rejected: Vec<&Value> = report["rejectedPolicies"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(rejected.len(), 1, "the 30-day GDPR policy: {report}");
    assert_eq!(rejected[0]["id"], "3");

    let puts = state.puts.lock().unwrap().clone();
    let expected_puts: BTreeMap<u64, (u32, u32)> = [1001, 1002, 1003, 1005, 1006, 1008, 1010, 1012]
        .into_iter()
        .map(|id| (id, (1, 0)))
        .chain([(1004, (0, 1))])
        .collect();
    assert_eq!(
        puts, expected_puts,
        "one PUT each where the retention differed; the hold once"
    );
    let jobs_per_recording = |s: &Other| {
        let mut out: BTreeMap<u64, u32> = BTreeMap::new();
        for job in s.jobs.lock().unwrap().values() {
            *out.entry(job.recording).or_default() += 1;
        }
        out
    };
    let jobs = jobs_per_recording(&state);
    assert_eq!(jobs.len(), 9, "{jobs:?}");
    assert_eq!(jobs[&1005], 2, "the failed job was submitted again");
    assert!(
        jobs.iter().all(|(id, n)| *id == 1005 || *n == 1),
        "{jobs:?}"
    );
    assert_eq!(state.tokens.load(Ordering::SeqCst), 1);

    let again = run();
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.json()["summary"]["done"], 0);
    assert_eq!(
        *state.puts.lock().unwrap(),
        expected_puts,
        "no PUT on a re-run"
    );
    assert_eq!(jobs_per_recording(&state), jobs, "no job on a re-run");
    rt.shutdown_background();
}
