//! The contacts export runs unchanged against another real-platform server: a small,
//! independent implementation of REAL_CXONE.md (OIDC discovery, the password grant with
//! `client_secret_basic`, a JWT carrying `tenantId`, `cxone-configuration`,
//! `/contacts/completed` with `updatedSince` and `_links.next`, `lastPollTime`, Media
//! Playback), making its own choices where the document is silent: an API base with a
//! path (`/inContactAPI`), string contact ids, at most 3 contacts a page whatever `top`
//! asks, no `next` link at all on the last page, poll times with a `+00:00` offset, tokens
//! refused after 5 API requests (and the very first token request answered 503), every 7th playback call throttled with `{message, route}`
//! and no `Retry-After`, media links good for one request, the first transfer cut mid-body,
//! the file type under `fileExtension` and no size, a contact without media answered with
//! an empty `interactions`. Only the tenant config differs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::download::listing;
use crate::harness::TestEnv;

const PAGE_CAP: usize = 3;
const API: &str = "/inContactAPI";

struct Contact {
    id: &'static str,
    kind: &'static str,
    /// Minutes after the epoch below of its last update.
    updated: i64,
}

const CONTACTS: [Contact; 8] = [
    Contact {
        id: "C-1001",
        kind: "voice",
        updated: 1,
    },
    Contact {
        id: "C-1002",
        kind: "chat",
        updated: 2,
    },
    Contact {
        id: "C-1003",
        kind: "voice",
        updated: 3,
    },
    Contact {
        id: "C-1004",
        kind: "none",
        updated: 4,
    },
    Contact {
        id: "C-1005",
        kind: "voice",
        updated: 5,
    },
    Contact {
        id: "C-1006",
        kind: "voice",
        updated: 6,
    },
    Contact {
        id: "C-1007",
        kind: "email",
        updated: 7,
    },
    Contact {
        id: "C-1008",
        kind: "voice",
        updated: 8,
    },
];
/// 2026-01-01T00:00:00Z.
const EPOCH_S: i64 = 1_767_225_600;

#[derive(Default)]
struct Other {
    base: Mutex<String>,
    token_calls: AtomicU64,
    tokens: AtomicU64,
    /// API requests made with the current token.
    uses: AtomicU64,
    playback_calls: AtomicU64,
    throttled: AtomicU64,
    links: Mutex<HashMap<String, (String, bool)>>,
    transfers: AtomicU64,
    cut: AtomicU64,
}

/// The audio of a voice contact: deterministic bytes, an MP3-ish frame header first.
fn audio(id: &str) -> Vec<u8> {
    let mut out = vec![0xFF, 0xFB, 0x90, 0x64];
    let mut x = id
        .bytes()
        .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(b.into()));
    while out.len() < 90_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        out.push((x >> 16) as u8);
    }
    out
}

fn time(minutes: i64) -> String {
    chrono::DateTime::from_timestamp(EPOCH_S + minutes * 60, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string()
}

fn jwt(n: u64) -> String {
    let b = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.sig",
        b(json!({"alg": "none"})),
        b(json!({"tenantId": "t-other", "n": n}))
    )
}

/// The 401 for a request whose bearer token is wrong or already used 5 times, if so.
fn refused(s: &Other, headers: &HeaderMap) -> Option<Response> {
    let current = format!("Bearer {}", jwt(s.tokens.load(Ordering::SeqCst)));
    let ok = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(current.as_str());
    if !ok || s.uses.fetch_add(1, Ordering::SeqCst) >= 5 {
        let body = Json(json!({"message": "token expired"}));
        return Some((StatusCode::UNAUTHORIZED, body).into_response());
    }
    None
}

async fn openid(State(s): State<Arc<Other>>) -> Json<Value> {
    let base = s.base.lock().unwrap().clone();
    Json(json!({ "issuer": base, "token_endpoint": format!("{base}/auth/token") }))
}

async fn cxone_configuration(
    State(s): State<Arc<Other>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if q.get("tenantId").map(String::as_str) != Some("t-other") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let base = s.base.lock().unwrap().clone();
    Json(
        json!({ "api_endpoint": format!("{base}{API}"), "area": "na1", "domain": "other.example" }),
    )
    .into_response()
}

async fn token(
    State(s): State<Arc<Other>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if s.token_calls.fetch_add(1, Ordering::SeqCst) == 0 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"message": "try again"})),
        )
            .into_response();
    }
    let basic = base64::engine::general_purpose::STANDARD.encode("other-app:app-secret");
    let ok = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(format!("Basic {basic}").as_str())
        && form.get("grant_type").map(String::as_str) == Some("password")
        && form.get("username").map(String::as_str) == Some("AK-OTHER")
        && form.get("password").map(String::as_str) == Some("aks-other");
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    let n = s.tokens.fetch_add(1, Ordering::SeqCst) + 1;
    s.uses.store(0, Ordering::SeqCst);
    Json(json!({ "access_token": jwt(n), "token_type": "Bearer", "expires_in": 3600, "id_token": "x" })).into_response()
}

async fn completed(
    State(s): State<Arc<Other>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    let since = q
        .get("updatedSince")
        .map(|t| chrono::DateTime::parse_from_rfc3339(t));
    let since = match since {
        Some(Ok(t)) => Some(t.timestamp()),
        Some(Err(_)) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"message": "bad updatedSince"})),
            )
                .into_response();
        }
        None => None,
    };
    let skip: usize = q.get("skip").and_then(|v| v.parse().ok()).unwrap_or(0);
    let hits: Vec<&Contact> = CONTACTS
        .iter()
        .filter(|c| since.is_none_or(|t| EPOCH_S + c.updated * 60 > t))
        .collect();
    let end = (skip + PAGE_CAP).min(hits.len());
    let page: Vec<Value> = hits[skip.min(end)..end]
        .iter()
        .map(|c| json!({ "contactId": c.id, "masterContactId": c.id, "contactStartDate": time(c.updated - 1), "agentId": "A-7", "lastUpdateTime": time(c.updated) }))
        .collect();
    let base = s.base.lock().unwrap().clone();
    let mut links = json!({ "self": format!("{base}{API}/contacts/completed?skip={skip}") });
    if end < hits.len() {
        let mut next = format!("{base}{API}/contacts/completed?skip={end}");
        if let Some(u) = q.get("updatedSince") {
            next.push_str(&format!(
                "&updatedSince={}",
                u.replace('+', "%2B").replace(':', "%3A")
            ));
        }
        links["next"] = json!(next);
    }
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f+00:00")
        .to_string();
    Json(json!({ "totalRecords": hits.len(), "_links": links, "lastPollTime": now, "completedContacts": page })).into_response()
}

async fn playback(
    State(s): State<Arc<Other>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    if (s.playback_calls.fetch_add(1, Ordering::SeqCst) + 1) % 7 == 0 {
        s.throttled.fetch_add(1, Ordering::SeqCst);
        let body =
            json!({ "message": "Too many requests", "route": "/media-playback/v1/contacts" });
        return (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    }
    let id = q.get("acd-call-id").cloned().unwrap_or_default();
    let Some(c) = CONTACTS.iter().find(|c| c.id == id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "no such contact"})),
        )
            .into_response();
    };
    let interactions = match c.kind {
        "voice" => {
            let token = format!("{id}-{}", s.playback_calls.load(Ordering::SeqCst));
            s.links
                .lock()
                .unwrap()
                .insert(token.clone(), (id.clone(), false));
            let base = s.base.lock().unwrap().clone();
            json!([{ "mediaType": "VOICE", "channelType": "PHONE", "startTime": time(c.updated - 1), "endTime": time(c.updated),
                     "data": { "fileToPlayUrl": format!("{base}/files/{token}"), "fileExtension": "mp3",
                               "participantDataList": [{ "participantType": "AGENT", "agentName": "Ann", "userId": "A-7", "channel": "1" }] } }])
        }
        "chat" | "email" => {
            json!([{ "mediaType": c.kind.to_uppercase(), "channelType": "DIGITAL", "startTime": time(c.updated - 1), "endTime": time(c.updated),
                                      "data": { "messages": [{ "text": "hello" }, { "text": "bye" }] } }])
        }
        _ => json!([]),
    };
    Json(json!({ "contactId": c.id, "acdcontactId": c.id, "interactions": interactions }))
        .into_response()
}

/// A media link: good for one request; the very first transfer is cut mid-body.
async fn file(State(s): State<Arc<Other>>, UrlPath(token): UrlPath<String>) -> Response {
    let id = {
        let mut links = s.links.lock().unwrap();
        match links.get_mut(&token) {
            Some((id, used)) if !*used => {
                *used = true;
                id.clone()
            }
            _ => return (StatusCode::FORBIDDEN, "link expired").into_response(),
        }
    };
    s.transfers.fetch_add(1, Ordering::SeqCst);
    let bytes = audio(&id);
    if s.cut.fetch_add(1, Ordering::SeqCst) == 0 {
        let half = bytes[..bytes.len() / 2].to_vec();
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            vec![Ok(half), Err(std::io::Error::other("connection reset"))];
        let body = Body::from_stream(futures::stream::iter(chunks));
        return (
            [
                ("content-type", "audio/mpeg"),
                ("content-length", &bytes.len().to_string()[..]),
            ],
            body,
        )
            .into_response();
    }
    ([("content-type", "audio/mpeg")], bytes).into_response()
}

#[test]
fn the_contacts_export_runs_unchanged_against_another_real_platform_server() {
    let state = Arc::new(Other::default());
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(openid))
        .route("/.well-known/cxone-configuration", get(cxone_configuration))
        .route("/auth/token", post(token))
        .route("/inContactAPI/contacts/completed", get(completed))
        .route("/inContactAPI/media-playback/v1/contacts", get(playback))
        .route("/files/{token}", get(file))
        .with_state(state.clone());
    let (rt, base) = crate::harness::serve(app);
    *state.base.lock().unwrap() = base.clone();

    let env = TestEnv::new();
    env.write("app", "app-secret");
    env.write("ak", "AK-OTHER");
    env.write("aks", "aks-other");
    let config = env.write(
        "cxpipe.toml",
        &format!(
            r#"
[tenants.other]
auth = {{ kind = "password", issuer = "{base}", client_id = "other-app", client_secret = {{ file = "app" }}, username = {{ file = "ak" }}, password = {{ file = "aks" }} }}
rate_limits = {{ preset = "cxone-real", families = {{ media-playback = {{ paths = ["/media-playback/v1"], requests = 50, per = "1s" }} }} }}
[tenants.other.params]
since = "2025-12-31T00:00:00Z"
page_size = 100
file_type_field = "fileExtension"
no_media_looks = 2
no_media_poll = "200ms"
[storage.default]
uri = "fs://{}"
"#,
            env.path().join("objects").display()
        ),
    );
    let args = ["--config", config.to_str().unwrap(), "--tenant", "other"];
    let ran = env.run(Path::new(super::contacts::SCRIPT), &args);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let report = &ran.json()["report"];
    assert_eq!(report["contacts_seen"].as_u64(), Some(8), "{report}");
    assert_eq!(report["archived"].as_u64(), Some(7), "{report}");
    assert_eq!(report["voice_files"].as_u64(), Some(5), "{report}");
    assert_eq!(report["message_files"].as_u64(), Some(2), "{report}");
    assert_eq!(
        report["skipped_by_reason"],
        json!({ "no media": 1 }),
        "{report}"
    );

    // The store: each voice contact's audio once and byte-exact, each text contact's
    // messages, nothing for the contact without media.
    let objects = listing(&env.path().join("objects"));
    let mut want: Vec<String> = Vec::new();
    for c in &CONTACTS {
        match c.kind {
            "voice" => {
                let key = format!("contacts/{}/voice-0.mp3", c.id);
                let got = std::fs::read(&objects[&key]).unwrap();
                assert_eq!(Sha256::digest(&got), Sha256::digest(audio(c.id)), "{key}");
                want.push(key);
            }
            "chat" | "email" => {
                let key = format!("contacts/{}/messages.json", c.id);
                let doc: Value =
                    serde_json::from_slice(&std::fs::read(&objects[&key]).unwrap()).unwrap();
                assert_eq!(doc["messages"][1]["text"], "bye");
                want.push(key);
            }
            _ => {}
        }
    }
    want.sort();
    let stored: Vec<&String> = objects
        .keys()
        .filter(|k| k.starts_with("contacts/") && !k.ends_with(".manifest.json"))
        .collect();
    assert_eq!(stored, want.iter().collect::<Vec<_>>());

    // The server's side: tokens renewed, throttling met, the cut transfer and the used
    // link replaced by a fresh playback answer, each file otherwise sent once.
    assert!(
        state.tokens.load(Ordering::SeqCst) >= 3,
        "tokens renewed after 5 requests"
    );
    assert!(state.throttled.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        state.transfers.load(Ordering::SeqCst),
        6,
        "5 files, one sent twice after the cut"
    );

    // A re-run from the committed poll time: nothing listed, no playback call.
    let calls = state.playback_calls.load(Ordering::SeqCst);
    let again = env.run(Path::new(super::contacts::SCRIPT), &args);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let s = &again.json()["summary"];
    assert_eq!(
        (s["emitted"].as_u64(), s["done"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    assert_eq!(state.playback_calls.load(Ordering::SeqCst), calls);
    rt.shutdown_background();
}
