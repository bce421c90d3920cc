//! The archival script runs unchanged against another seed-004 server: a small,
//! independent implementation of what the guide writes (client credentials, `POST
//! /api/v2/interactions/query` with a filter, order and page size, interaction details
//! with participants and media, an `archival_status` custom field), making its own choices
//! where the guide is silent: results under `data`, the cursor at `pagination.nextPage`
//! and sent back as the `cursor` query parameter, at most 4 results a page (more is a
//! 400), statuses in capitals, times as epoch seconds, ids that need percent-encoding,
//! no custom fields in query results, the field set by `PUT …/custom-fields/{fieldId}`.
//! It also answers one query with a 429, the first detail of some interactions with a
//! 503, and one closed interaction's details with a 404. Only the tenant config differs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Value, json};

use super::{assert_archival_schema, stored_records};
use crate::harness::TestEnv;

const PAGE_CAP: u64 = 4;
const FIELD_ID: &str = "cf-77";

struct Ix {
    id: &'static str,
    closed: bool,
    /// Details answer 404 (the interaction is gone).
    gone: bool,
    /// The first detail request answers 503.
    flaky: bool,
    created: i64,
}

#[derive(Default)]
struct Other {
    interactions: Vec<Ix>,
    fields: Mutex<HashMap<String, String>>,
    tokens: AtomicU64,
    queries: AtomicU64,
    unavailable: AtomicU64,
    detail_calls: Mutex<HashMap<String, u64>>,
}

fn authed(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer other-"))
}

fn status(ix: &Ix) -> &'static str {
    if ix.closed { "CLOSED" } else { "OPEN" }
}

async fn token(
    State(s): State<Arc<Other>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let basic = base64::engine::general_purpose::STANDARD.encode("arch-client:arch-secret");
    let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(format!("Basic {basic}").as_str());
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

async fn query(
    State(s): State<Arc<Other>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Response {
    if !authed(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if s.queries.fetch_add(1, Ordering::SeqCst) == 1 {
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response();
    }
    let size = body["pageSize"].as_u64().unwrap_or(PAGE_CAP);
    if size == 0 || size > PAGE_CAP {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": format!("pageSize must be 1..={PAGE_CAP}") })),
        )
            .into_response();
    }
    let wanted = body["filter"]
        .as_str()
        .unwrap_or("")
        .strip_prefix("status:")
        .map(str::to_ascii_uppercase);
    let start: usize = q
        .get("cursor")
        .and_then(|c| c.strip_prefix("c-")?.parse().ok())
        .unwrap_or(0);
    let hits: Vec<&Ix> = s
        .interactions
        .iter()
        .filter(|ix| wanted.as_deref().is_none_or(|w| w == status(ix)))
        .collect();
    let end = (start + size as usize).min(hits.len());
    let data: Vec<Value> = hits[start.min(end)..end]
        .iter()
        .map(|ix| {
            json!({ "id": ix.id, "type": "chat", "status": status(ix),
                    "created_time": ix.created, "updated_time": ix.created + 600 })
        })
        .collect();
    let next = (end < hits.len()).then(|| format!("c-{end}"));
    Json(json!({ "data": data, "pagination": { "nextPage": next } })).into_response()
}

async fn detail(
    State(s): State<Arc<Other>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if !authed(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(ix) = s.interactions.iter().find(|ix| ix.id == id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let calls = {
        let mut calls = s.detail_calls.lock().unwrap();
        let n = calls.entry(id.clone()).or_default();
        *n += 1;
        *n
    };
    if ix.flaky && calls == 1 {
        s.unavailable.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if ix.gone {
        return (StatusCode::NOT_FOUND, Json(json!({ "error": "gone" }))).into_response();
    }
    let archival = s.fields.lock().unwrap().get(&id).cloned();
    Json(json!({
        "id": ix.id, "type": "chat", "status": status(ix),
        "created_time": ix.created, "updated_time": ix.created + 600,
        "participants": [
            { "id": "a-1", "type": "AGENT", "address": "agent@x", "state": "DISCONNECTED", "skills": ["x"] },
            { "id": "c-9", "type": "CUSTOMER", "address": "+15550001", "state": "DISCONNECTED" },
        ],
        "media": [{ "id": format!("m-{}", ix.created), "type": "transcript", "duration_ms": null,
                    "format": "json", "playback_url": "https://other.example/t", "created_time": ix.created + 30 }],
        "fields": { "archival_status": archival },
    }))
    .into_response()
}

async fn set_field(
    State(s): State<Arc<Other>>,
    headers: HeaderMap,
    UrlPath((id, field)): UrlPath<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    if !authed(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(ix) = s.interactions.iter().find(|ix| ix.id == id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if field != FIELD_ID {
        return StatusCode::NOT_FOUND.into_response();
    }
    if !ix.closed {
        return StatusCode::CONFLICT.into_response();
    }
    let Some(value) = body["value"].as_str() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    s.fields.lock().unwrap().insert(id, value.to_string());
    StatusCode::NO_CONTENT.into_response()
}

fn interactions() -> Vec<Ix> {
    let ix = |id, closed, gone, flaky, n: i64| Ix {
        id,
        closed,
        gone,
        flaky,
        created: 1_700_000_000 + n * 3600,
    };
    vec![
        ix("chat/2026 11#1", true, false, true, 0),
        ix("voice:7?x=1&y=2", true, false, false, 1),
        ix("email%41", false, false, false, 2),
        ix("ix 4", true, false, false, 3),
        ix("ix/5", true, true, false, 4),
        ix("ix#6", true, false, true, 5),
        ix("plain-7", false, false, false, 6),
        ix("plain-8", true, false, false, 7),
        ix("ü-9", true, false, false, 8),
    ]
}

#[test]
fn the_archival_script_runs_unchanged_against_another_seed_004_server() {
    let state = Arc::new(Other {
        interactions: interactions(),
        ..Other::default()
    });
    let app = Router::new()
        .route("/api/v2/oauth/token", post(token))
        .route("/api/v2/interactions/query", post(query))
        .route("/api/v2/interactions/{id}", get(detail))
        .route(
            "/api/v2/interactions/{id}/custom-fields/{field}",
            put(set_field),
        )
        .with_state(state.clone());
    let (rt, base) = crate::harness::serve(app);

    let env = TestEnv::new();
    env.write("secret", "arch-secret");
    env.write("k.key", &"cd".repeat(32));
    let config = env.write(
        "cxpipe.toml",
        &format!(
            r#"
[tenants.other]
base_url = "{base}"
auth = {{ kind = "client_credentials", token_url = "/api/v2/oauth/token", client_id = "arch-client", client_secret = {{ file = "secret" }} }}
[tenants.other.params]
results_field = "data"
cursor_field = "pagination.nextPage"
cursor_param = "cursor"
cursor_in = "query"
page_size = {PAGE_CAP}
time_format = "epoch_s"
status_update = "put"
archival_field_id = "{FIELD_ID}"
archival_field_path = "fields.archival_status"
encrypt_key = "k"
batch_size = 3
[storage.default]
uri = "fs://{}"
[keys.k]
file = "k.key"
"#,
            env.path().join("objects").display()
        ),
    );
    let args = ["--config", config.to_str().unwrap(), "--tenant", "other"];
    let ran = env.run(Path::new(super::SCRIPT), &args);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let report = &ran.json()["report"];

    let all = &state.interactions;
    let archivable: Vec<&str> = all
        .iter()
        .filter(|ix| ix.closed && !ix.gone)
        .map(|ix| ix.id)
        .collect();
    assert_eq!(
        report["archived"].as_u64(),
        Some(archivable.len() as u64),
        "{report}"
    );
    assert_eq!(report["failed"].as_u64(), Some(1), "{report}");
    assert_eq!(
        report["failure_reasons"],
        json!({ "details not fetched: HTTP 404": 1 }),
        "{report}"
    );
    assert_eq!(report["failed_records"][0]["interaction_id"], "ix/5");
    assert_eq!(report["success_rate"], "85.71%", "6 of 7 closed: {report}");
    assert_eq!(
        report["skipped_by_reason"],
        json!({ "not closed (open)": 2 }),
        "{report}"
    );

    // The objects hold exactly the archivable interactions, in the archival schema with
    // epoch seconds turned into ISO 8601.
    let records = stored_records(&env, &config);
    let mut stored: Vec<&str> = records
        .values()
        .flatten()
        .map(|r| r["interaction_id"].as_str().unwrap())
        .collect();
    stored.sort();
    let mut want = archivable.clone();
    want.sort();
    assert_eq!(stored, want);
    for r in records.values().flatten() {
        assert_archival_schema(r);
    }
    let first = records
        .values()
        .flatten()
        .find(|r| r["interaction_id"] == "chat/2026 11#1")
        .unwrap();
    assert_eq!(first["created_time"], "2023-11-14T22:13:20.000Z");
    assert_eq!(first["status"], "CLOSED");
    assert_eq!(first["participants"][0]["type"], "AGENT");

    // The server marked exactly those, took one token, and its faults were met.
    let fields = state.fields.lock().unwrap().clone();
    let mut marked: Vec<&str> = fields.keys().map(String::as_str).collect();
    marked.sort();
    assert_eq!(marked, want);
    assert!(fields.values().all(|v| v == "archived"));
    assert_eq!(state.tokens.load(Ordering::SeqCst), 1);
    assert_eq!(state.unavailable.load(Ordering::SeqCst), 2);

    // A re-run does no new work (the same batches, already done).
    let again = env.run(Path::new(super::SCRIPT), &args);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let s = &again.json()["summary"];
    assert_eq!(
        (s["admitted"].as_u64(), s["done"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    rt.shutdown_background();
}
