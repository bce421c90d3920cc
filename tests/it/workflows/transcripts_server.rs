//! The recordings + transcripts script runs unchanged against another seed-003 server: a
//! small implementation of the guide's endpoints written from the guide alone, making its
//! own choices where the guide is silent: upper-case statuses and locations, a listing
//! under `/api/v2/media/recordings` with `data`/`count`, segment ids under `transcripts`,
//! 1-based segments, times in seconds, utterances repeated across segment boundaries,
//! tokens that stop working after a few requests, a content endpoint that answers the
//! first request of each recording with only half of it (206), and one recording whose
//! media always fails. Only the tenant configuration differs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::transcripts::{
    SCRIPT, assert_transcript_shape, ledger_items, object, sha256_hex, skip_reason,
};
use crate::harness::TestEnv;

/// Requests one token may make before the server calls it expired.
const TOKEN_USES: u64 = 10;
const BROKEN: &str = "R4";
const ARCHIVED: &str = "R3";

struct Other {
    started: Instant,
    tokens: AtomicU64,
    /// Requests made with each token.
    uses: Mutex<HashMap<String, u64>>,
    /// Content requests per recording, and whether its first one was served.
    content: Mutex<BTreeMap<String, u64>>,
    segment_requests: AtomicU64,
}

fn media(id: &str) -> Vec<u8> {
    (0..50_000u32)
        .map(|i| (i.wrapping_mul(31) ^ id.len() as u32 ^ u32::from(id.as_bytes()[1])) as u8)
        .collect()
}

fn recordings() -> Vec<&'static str> {
    vec!["R1", "R2", "R3", "R4", "R5"]
}

/// An utterance: (start s, end s, speaker, text, confidence).
type Utterance = (f64, f64, &'static str, &'static str, f64);
/// A segment: (index, published after, utterances).
type Segment = (u64, Option<Duration>, Vec<Utterance>);

/// Segments (1-based) per recording: (index, published after, utterances as
/// (start s, end s, speaker, text, confidence)). R2's segment 2 never publishes; R5's
/// segment 1 is late.
fn segments(id: &str) -> Vec<Segment> {
    let first = vec![
        (0.0, 2.5, "AGENT", "Thank you for calling.", 0.97),
        (2.0, 6.0, "Customer", "My card is 4111 1111.", 0.80),
    ];
    // Starts with the tail of the previous segment's last utterance (same speaker, overlapping).
    let second = vec![
        (5.5, 7.0, "customer", "It expires soon.", 0.91),
        (7.5, 9.0, "agent", "Mail me at a@b.example.", 0.99),
    ];
    match id {
        "R2" => vec![
            (1, None, first),
            (2, None, second),
            (3, None, vec![(10.0, 11.0, "agent", "Bye.", 0.9)]),
        ],
        "R5" => vec![
            (2, None, second),
            (1, Some(Duration::from_millis(1500)), first),
        ],
        _ => vec![(2, None, second), (1, None, first)],
    }
}

fn never_published(id: &str, index: u64) -> bool {
    id == "R2" && index == 2
}

/// Counts one use of the request's token; false (answer 401) when it is unknown or used up.
fn authed(s: &Other, headers: &HeaderMap) -> bool {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let mut uses = s.uses.lock().unwrap();
    match uses.get_mut(&token) {
        Some(n) if *n < TOKEN_USES => {
            *n += 1;
            true
        }
        _ => false,
    }
}

async fn token(State(s): State<Arc<Other>>, Form(form): Form<HashMap<String, String>>) -> Response {
    if form.get("client_id").map(String::as_str) != Some("tr-client")
        || form.get("client_secret").map(String::as_str) != Some("tr-secret")
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let n = s.tokens.fetch_add(1, Ordering::SeqCst);
    let token = format!("tok-{n}");
    s.uses.lock().unwrap().insert(token.clone(), 0);
    Json(json!({ "access_token": token, "token_type": "Bearer", "expires_in": 3600 }))
        .into_response()
}

async fn list(
    State(s): State<Arc<Other>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authed(&s, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let offset: usize = q.get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let data: Vec<Value> = recordings()
        .into_iter()
        .skip(offset)
        .take(2)
        .map(|id| json!({ "recordingId": id }))
        .collect();
    Json(json!({ "data": data, "count": recordings().len() })).into_response()
}

async fn recording(
    State(s): State<Arc<Other>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if !authed(&s, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let archived = id == ARCHIVED;
    let published: Vec<String> = segments(&id)
        .into_iter()
        .filter(|(k, late, _)| {
            !never_published(&id, *k) && late.is_none_or(|d| s.started.elapsed() >= d)
        })
        .map(|(k, _, _)| format!("{id}-seg-{k}"))
        .collect();
    Json(json!({
        "recordingId": id,
        "callId": format!("call-{id}"),
        "status": if archived { "ARCHIVED" } else { "AVAILABLE" },
        "storageLocation": if archived { "COLD" } else { "ACTIVE" },
        "sizeBytes": 50_000,
        "format": "wav",
        "segmentCount": segments(&id).len(),
        "transcripts": published,
    }))
    .into_response()
}

async fn content(
    State(s): State<Arc<Other>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if !authed(&s, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let n = {
        let mut c = s.content.lock().unwrap();
        let n = c.entry(id.clone()).or_default();
        *n += 1;
        *n
    };
    if id == BROKEN {
        return StatusCode::BAD_GATEWAY.into_response();
    }
    let body = media(&id);
    let total = body.len();
    let from: usize = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.trim_end_matches('-').parse().ok())
        .unwrap_or(0);
    // The first answer stops half way, and says so in Content-Range.
    let to = if n == 1 { total / 2 } else { total };
    (
        StatusCode::PARTIAL_CONTENT,
        [
            (header::CONTENT_TYPE, "audio/wav".to_string()),
            (header::ETAG, format!("\"{id}-v1\"")),
            (
                header::CONTENT_RANGE,
                format!("bytes {from}-{}/{total}", to - 1),
            ),
        ],
        body[from..to].to_vec(),
    )
        .into_response()
}

async fn transcript(
    State(s): State<Arc<Other>>,
    headers: HeaderMap,
    UrlPath(sid): UrlPath<String>,
) -> Response {
    if !authed(&s, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    s.segment_requests.fetch_add(1, Ordering::SeqCst);
    let Some((id, k)) = sid.split_once("-seg-") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let k: u64 = k.parse().unwrap_or(0);
    let all = segments(id);
    let Some((_, late, utterances)) = all.iter().find(|(i, _, _)| *i == k) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if never_published(id, k) || late.is_some_and(|d| s.started.elapsed() < d) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let us: Vec<Value> = utterances
        .iter()
        .map(|(a, b, sp, t, c)| json!({ "startTime": a, "endTime": b, "speaker": sp, "text": t, "confidence": c }))
        .collect();
    Json(json!({
        "id": sid, "callId": format!("call-{id}"), "recordingId": id,
        "segmentIndex": k, "totalSegments": all.len(), "language": "en-GB", "utterances": us,
    }))
    .into_response()
}

#[test]
fn the_transcripts_script_runs_unchanged_against_another_seed_003_server() {
    let state = Arc::new(Other {
        started: Instant::now(),
        tokens: AtomicU64::new(0),
        uses: Mutex::default(),
        content: Mutex::default(),
        segment_requests: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/oauth/token", post(token))
        .route("/api/v2/media/recordings", get(list))
        .route("/api/v2/media/recordings/{id}", get(recording))
        .route("/api/v2/media/recordings/{id}/content", get(content))
        .route("/api/v2/media/transcripts/{id}", get(transcript))
        .with_state(state.clone());
    let (rt, base) = crate::harness::serve(app);

    let env = TestEnv::new();
    env.write("secret", "tr-secret");
    let config = env.write(
        "cxpipe.toml",
        &format!(
            r#"
[tenants.other]
base_url = "{base}"
auth = {{ kind = "client_credentials", token_url = "/oauth/token", client_id = "tr-client", client_secret = {{ file = "secret" }}, credentials_in = "body" }}
[tenants.other.params]
list_path = "/api/v2/media/recordings"
list_items = "data"
list_total = "count"
available_status = ["Available"]
missing_status = ["Archived", "Expired"]
time_format = "seconds"
segment_base = 1
assembly_window = "3s"
segment_poll = "200ms"
fields = {{ id = "recordingId", transcript_ids = "transcripts", total = "segmentCount" }}
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
    assert_eq!(
        ran.code, 1,
        "one recording quarantined\n{}\n{}",
        ran.stdout, ran.stderr
    );
    let items = ledger_items(&env);
    let state_of = |id: &str| items[id].state.clone();
    assert_eq!(
        (
            state_of("R1"),
            state_of("R2"),
            state_of("R3"),
            state_of("R4"),
            state_of("R5")
        ),
        (
            "done".into(),
            "done".into(),
            "skipped".into(),
            "quarantined".into(),
            "done".into()
        ),
        "{items:?}"
    );
    assert_eq!(skip_reason(&items[ARCHIVED]), "audio_missing");

    // Media: whole (the half answer was resumed from its Content-Range), fetched once.
    for id in ["R1", "R2", "R5"] {
        let bytes = object(&env, &format!("media/call-{id}/{id}.wav")).expect("stored");
        assert_eq!(sha256_hex(&bytes), sha256_hex(&media(id)), "{id}");
    }
    assert!(object(&env, "media/call-R3/R3.wav").is_none());
    let content = state.content.lock().unwrap().clone();
    assert_eq!(content["R1"], 2, "half, then the rest: {content:?}");
    // 3 tries per attempt, 3 attempts. This server lets a token make only a few requests:
    // a try that meets a used-up token is refused (401) before it is counted here, so one
    // attempt may show one 502 fewer, whichever item the refusal lands on.
    assert!(
        (7..=9).contains(&content[BROKEN]),
        "3 tries per attempt, 3 attempts: {content:?} {:?}",
        items[BROKEN].last_error
    );
    assert!(!content.contains_key(ARCHIVED));
    assert!(
        state.tokens.load(Ordering::SeqCst) > 2,
        "tokens refused mid-run were refreshed"
    );

    // Transcripts: overlaps merged, 1-based segments, late one caught, missing one named.
    let t1 = assert_transcript_shape(&env, "call-R1", "transcripts/");
    assert_eq!(t1["complete"], true);
    assert_eq!(t1["overlapsMerged"], 1, "{t1}");
    let texts: Vec<&str> = t1["utterances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "Thank you for calling.",
            "My card is 4111 1111. It expires soon.",
            "Mail me at a@b.example."
        ]
    );
    assert_eq!(t1["utterances"][1]["endTime"], "00:00:07.000");
    assert_eq!(
        t1["utterances"][1]["flagged"], true,
        "lowest confidence kept"
    );
    let t2 = assert_transcript_shape(&env, "call-R2", "transcripts/");
    assert_eq!(
        (t2["complete"].clone(), t2["missingSegments"].clone()),
        (json!(false), json!([2]))
    );
    let t3 = assert_transcript_shape(&env, "call-R3", "transcripts/");
    assert_eq!(
        (t3["complete"].clone(), t3["audio_missing"].clone()),
        (json!(true), json!(true))
    );
    let t5 = assert_transcript_shape(&env, "call-R5", "transcripts/");
    assert_eq!(t5["segmentsReceived"], json!([1, 2]), "{t5}");

    // A re-run does no new work.
    let segment_requests = state.segment_requests.load(Ordering::SeqCst);
    let again = run();
    assert_eq!(again.json()["summary"]["done"], 0, "{}", again.stderr);
    assert_eq!(
        *state.content.lock().unwrap(),
        content,
        "no media fetched again"
    );
    assert_eq!(
        state.segment_requests.load(Ordering::SeqCst),
        segment_requests
    );
    rt.shutdown_background();
}
