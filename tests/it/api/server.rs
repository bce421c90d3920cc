//! A small CXone-like server for the api tests: a token endpoint, a 10,007-record (or any
//! size) collection served in every pagination style, a rate-limited route, a job to poll,
//! and knobs for faults (401s, 503s per page, 429s with either `Retry-After` form).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use futures::StreamExt as _;
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "client-7";
pub const CLIENT_SECRET: &str = "s3cret-value-never-shown";
pub const ACCESS_KEY_ID: &str = "AK-1";
pub const ACCESS_KEY_SECRET: &str = "ak-secret-never-shown";
pub const TENANT_ID: &str = "11EA-TENANT";

/// Knobs and counters, shared with the test.
#[derive(Default)]
pub struct Behaviour {
    pub records: u64,
    pub token_ttl_secs: u64,
    pub token_requests: AtomicU64,
    pub api_requests: AtomicU64,
    /// Tokens issued and not revoked.
    pub valid_tokens: Mutex<Vec<String>>,
    /// Answer every API call with 401 regardless of the token.
    pub always_401: AtomicBool,
    /// Each distinct page request fails with 503 this many times first.
    pub page_failures: u32,
    pub failures_seen: Mutex<HashMap<String, u32>>,
    /// `/limited`: requests allowed per window, and the window.
    pub window: Option<(u64, Duration)>,
    pub window_state: Mutex<Window>,
    pub throttled: AtomicU64,
    /// `/throttled`: the `Retry-After` value sent once (`date:N` = an HTTP date N s ahead),
    /// with status `throttle_status` (429 when 0).
    pub retry_after: Mutex<Option<String>>,
    pub throttle_status: u16,
    /// `/jobs/{id}`: polls answered `RUNNING` before the final state.
    pub job_polls_before_done: u64,
    pub job_final_state: String,
    pub job_polls: AtomicU64,
    /// Password-grant server: single-use refresh tokens issued, grants by kind, and a knob
    /// to refuse refresh tokens.
    pub refresh_tokens: Mutex<Vec<String>>,
    pub password_grants: AtomicU64,
    pub refresh_grants: AtomicU64,
    pub refuse_refresh: AtomicBool,
    /// The token endpoint never answers (it sleeps two minutes).
    pub stall_token: AtomicBool,
    /// `/redirect`: where it sends the client (302).
    pub redirect_to: Mutex<Option<String>>,
    /// `/open` (no auth) requests seen.
    pub open_requests: AtomicU64,
    /// `expires_in` to send instead of `token_ttl_secs` (any JSON value).
    pub expires_in: Mutex<Option<Value>>,
    /// `/paths/...`: the raw (still encoded) path and query of each request, in order.
    pub raw_paths: Mutex<Vec<String>>,
}

/// Where the fixed window stands: when windows started, which one is current, and its count.
#[derive(Default)]
pub struct Window {
    start: Option<Instant>,
    index: u64,
    count: u64,
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<Behaviour>,
}

impl TestServer {
    pub async fn start(behaviour: Behaviour) -> TestServer {
        let state = Arc::new(behaviour);
        let app = Router::new()
            .route("/api/v2/oauth/token", post(token))
            .route(
                "/.well-known/openid-configuration",
                get(openid_configuration),
            )
            .route("/.well-known/cxone-configuration", get(cxone_configuration))
            .route("/auth/token", post(password_token))
            .route("/records", get(records_get))
            .route("/tenant-api/records", get(records_get))
            .route("/records/search", post(records_post))
            .route("/limited", get(limited))
            .route("/throttled", get(throttled))
            .route("/jobs/{id}", get(job))
            .route("/echo", post(echo).put(echo).patch(echo).delete(echo))
            .route("/paths/{*rest}", any(raw_path))
            .route("/cycle", get(cycle))
            .route("/stall-headers", get(stall_headers))
            .route("/drip", get(drip))
            .route("/redirect", get(redirect))
            .route("/open", get(open))
            .route("/api/v2/recording/{*rest}", any(raw_path))
            .route("/interaction-analytics-gateway/{*rest}", any(raw_path))
            .route("/media-download/{*rest}", any(raw_path))
            .route("/data-extraction/{*rest}", any(raw_path))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        TestServer { addr, state }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Revokes every token issued so far (the next call with one gets 401).
    pub fn revoke_tokens(&self) {
        self.state.valid_tokens.lock().unwrap().clear();
    }
}

type Shared = State<Arc<Behaviour>>;

async fn token(State(s): Shared, headers: HeaderMap, body: String) -> Response {
    let n = s.token_requests.fetch_add(1, SeqCst) + 1;
    if s.stall_token.load(SeqCst) {
        tokio::time::sleep(Duration::from_secs(120)).await;
    }
    use base64::Engine as _;
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let basic_ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Basic {expected}"));
    let body_ok = body.contains(&format!("client_id={CLIENT_ID}"))
        && body.contains(&format!("client_secret={CLIENT_SECRET}"));
    if !body.contains("grant_type=client_credentials") || !(basic_ok || body_ok) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let access = format!("tok-{n}");
    s.valid_tokens.lock().unwrap().push(access.clone());
    let expires_in = s
        .expires_in
        .lock()
        .unwrap()
        .clone()
        .unwrap_or(json!(s.token_ttl_secs.max(1)));
    Json(json!({"access_token": access, "token_type": "Bearer", "expires_in": expires_in}))
        .into_response()
}

fn host(headers: &HeaderMap) -> String {
    headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn openid_configuration(headers: HeaderMap) -> Json<Value> {
    let base = format!("http://{}", host(&headers));
    Json(json!({"issuer": base, "token_endpoint": format!("{base}/auth/token")}))
}

async fn cxone_configuration(
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if q.get("tenantId").map(String::as_str) != Some(TENANT_ID) {
        return (StatusCode::NOT_FOUND, "unknown tenant").into_response();
    }
    let api = format!("http://{}/tenant-api", host(&headers));
    Json(json!({"api_endpoint": api, "area": "na1", "domain": "example.test"})).into_response()
}

/// The real platform's password grant: access key as username/password, client in Basic.
async fn password_token(State(s): Shared, headers: HeaderMap, body: String) -> Response {
    use base64::Engine as _;
    let n = s.token_requests.fetch_add(1, SeqCst) + 1;
    let client =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let basic_ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Basic {client}"));
    let password_ok = body.contains("grant_type=password")
        && body.contains(&format!("username={ACCESS_KEY_ID}"))
        && body.contains(&format!("password={ACCESS_KEY_SECRET}"));
    let refresh_ok = body.contains("grant_type=refresh_token") && {
        let mut issued = s.refresh_tokens.lock().unwrap();
        let before = issued.len();
        issued.retain(|t| !body.contains(&format!("refresh_token={t}")));
        issued.len() < before && !s.refuse_refresh.load(SeqCst)
    };
    if !(basic_ok && (password_ok || refresh_ok)) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    let grants = if refresh_ok {
        &s.refresh_grants
    } else {
        &s.password_grants
    };
    grants.fetch_add(1, SeqCst);
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"tenantId": TENANT_ID, "n": n}).to_string());
    let access = format!("eyJhbGciOiJSUzI1NiJ9.{claims}.sig");
    let refresh = format!("refresh-{n}");
    s.valid_tokens.lock().unwrap().push(access.clone());
    s.refresh_tokens.lock().unwrap().push(refresh.clone());
    Json(json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600, "refresh_token": refresh, "id_token": "i"}))
        .into_response()
}

/// Checks the bearer token and counts the call; `Some` is the 401 to send.
fn authorize(s: &Behaviour, headers: &HeaderMap) -> Option<Response> {
    s.api_requests.fetch_add(1, SeqCst);
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let valid = s.valid_tokens.lock().unwrap().iter().any(|t| t == token);
    if !valid || s.always_401.load(SeqCst) {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                [("x-request-id", "req-401")],
                "token rejected",
            )
                .into_response(),
        );
    }
    None
}

/// Fails the first `page_failures` requests for each distinct page with 503.
fn inject_failure(s: &Behaviour, key: String) -> Option<Response> {
    let mut seen = s.failures_seen.lock().unwrap();
    let count = seen.entry(key).or_insert(0);
    if *count < s.page_failures {
        *count += 1;
        return Some((StatusCode::SERVICE_UNAVAILABLE, "try again").into_response());
    }
    None
}

fn number(params: &HashMap<String, String>, key: &str) -> Option<u64> {
    params.get(key).and_then(|v| v.parse().ok())
}

fn slice(s: &Behaviour, from: u64, count: u64) -> Vec<Value> {
    (from..(from + count).min(s.records))
        .map(|i| json!({"id": i, "name": format!("record {i}")}))
        .collect()
}

/// Serves the collection in the style the query asks for.
async fn records_get(
    State(s): Shared,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = authorize(&s, &headers) {
        return r;
    }
    let mut key: Vec<_> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
    key.sort();
    if let Some(r) = inject_failure(&s, key.join("&")) {
        return r;
    }
    if let (Some(offset), Some(limit)) = (number(&q, "offset"), number(&q, "limit")) {
        return Json(json!({"items": slice(&s, offset, limit), "total": s.records}))
            .into_response();
    }
    if let (Some(skip), Some(top)) = (number(&q, "skip"), number(&q, "top")) {
        let next = (skip + top < s.records)
            .then(|| format!("/records?skip={}&top={top}&style=link", skip + top));
        let link = q.contains_key("style").then_some(next.clone()).flatten();
        return Json(json!({"completedContacts": slice(&s, skip, top), "totalRecords": s.records, "_links": {"next": link}}))
            .into_response();
    }
    if let (Some(page), Some(size)) = (number(&q, "page"), number(&q, "pageSize")) {
        return Json(json!({"data": slice(&s, (page - 1) * size, size)})).into_response();
    }
    // Cursor style: the token is the next offset, disguised.
    let size = number(&q, "pageSize").unwrap_or(100);
    let from = q
        .get("pageToken")
        .and_then(|t| t.strip_prefix("c-"))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let next = (from + size < s.records).then(|| format!("c-{}", from + size));
    Json(json!({"data": slice(&s, from, size), "meta": {"nextPageToken": next}})).into_response()
}

/// The collection behind a POST search: page/pageSize or a cursor in the body.
async fn records_post(State(s): Shared, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(r) = authorize(&s, &headers) {
        return r;
    }
    if let Some(r) = inject_failure(&s, body.to_string()) {
        return r;
    }
    if body["filters"] != json!([{"field": "status", "value": "Available"}]) {
        return (StatusCode::BAD_REQUEST, "filters lost").into_response();
    }
    let size = body["pageSize"].as_u64().unwrap_or(100);
    if let Some(page) = body["page"].as_u64() {
        return Json(json!({"data": slice(&s, (page - 1) * size, size)})).into_response();
    }
    let from = body["pagination"]["page_token"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let next = (from + size < s.records).then(|| (from + size).to_string());
    Json(json!({"interactions": slice(&s, from, size), "pagination": {"next_page": next}}))
        .into_response()
}

/// A fixed-window limit, like a gateway: 429 with `Retry-After` (whole seconds, rounded up).
async fn limited(State(s): Shared, headers: HeaderMap) -> Response {
    if let Some(r) = authorize(&s, &headers) {
        return r;
    }
    let (allowed, window) = s.window.expect("window configured");
    let mut state = s.window_state.lock().unwrap();
    let now = Instant::now();
    let start = *state.start.get_or_insert(now);
    let index = ((now - start).as_nanos() / window.as_nanos()) as u64;
    let window_start = start + window * index as u32;
    if state.index != index {
        (state.index, state.count) = (index, 0);
    }
    if state.count >= allowed {
        s.throttled.fetch_add(1, SeqCst);
        let left = (window_start + window).saturating_duration_since(now);
        let secs = left.as_secs_f64().ceil().max(1.0) as u64;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
            "slow down",
        )
            .into_response();
    }
    state.count += 1;
    Json(json!({"ok": true})).into_response()
}

/// 429 once with the configured `Retry-After`, then 200.
async fn throttled(State(s): Shared, headers: HeaderMap) -> Response {
    if let Some(r) = authorize(&s, &headers) {
        return r;
    }
    let Some(value) = s.retry_after.lock().unwrap().take() else {
        return Json(json!({"ok": true})).into_response();
    };
    let value = match value.strip_prefix("date:") {
        Some(secs) => {
            httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(secs.parse().unwrap()))
        }
        None => value,
    };
    let status = StatusCode::from_u16(s.throttle_status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    let mut response = (status, Json(json!({"message": "throttled"}))).into_response();
    if !value.is_empty() {
        response
            .headers_mut()
            .insert("retry-after", value.parse().unwrap());
    }
    response
}

async fn job(State(s): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = authorize(&s, &headers) {
        return r;
    }
    let n = s.job_polls.fetch_add(1, SeqCst) + 1;
    let status = if n > s.job_polls_before_done {
        s.job_final_state.as_str()
    } else {
        "RUNNING"
    };
    Json(json!({"jobStatus": {"id": id, "status": status, "result": {"errorMessage": "disk full", "url": "https://x/result.csv"}}}))
        .into_response()
}

async fn echo(
    State(s): Shared,
    headers: HeaderMap,
    method: axum::http::Method,
    body: String,
) -> Response {
    if let Some(r) = authorize(&s, &headers) {
        return r;
    }
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    Json(json!({"method": method.as_str(), "body": body})).into_response()
}

/// Answers any method under `/paths/` (and the stdlib modules' prefixes) with the raw path
/// and query it saw (nothing decoded), records them, and adds the fields the stdlib modules
/// read (a finished job whose result URL, and a transcript whose one block, is that path).
async fn raw_path(
    State(s): Shared,
    headers: HeaderMap,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> Response {
    if let Some(r) = authorize(&s, &headers) {
        return r;
    }
    let seen = match uri.query() {
        Some(query) => format!("{}?{query}", uri.path()),
        None => uri.path().to_string(),
    };
    s.raw_paths.lock().unwrap().push(seen.clone());
    Json(json!({
        "method": method.as_str(), "path": uri.path(), "query": uri.query(), "seen": seen,
        "status": "COMPLETED", "jobStatus": {"status": "SUCCEEDED", "result": {"url": seen}},
        "transcriptBlocks": [seen],
    }))
    .into_response()
}

/// Pagination that goes round in circles, by `kind`: `cursor` hands out tokens A, B, A, B…;
/// `link` next links p=1 → p=2 → p=1…; `same` answers every offset with the same full page.
async fn cycle(
    State(s): Shared,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = authorize(&s, &headers) {
        return r;
    }
    let kind = q.get("kind").map(String::as_str).unwrap_or("");
    let body = match kind {
        "cursor" => {
            let token = q.get("pageToken").map(String::as_str).unwrap_or("");
            let next = if token == "A" { "B" } else { "A" };
            json!({"data": [{"id": format!("after-{token}")}], "nextPageToken": next})
        }
        "link" => {
            let p = q.get("p").map(String::as_str).unwrap_or("1");
            let next = if p == "1" { "2" } else { "1" };
            json!({"data": [{"id": p}], "_links": {"next": format!("/cycle?kind=link&p={next}")}})
        }
        _ => {
            let limit = number(&q, "limit").unwrap_or(1);
            json!({"items": slice(&Behaviour { records: limit, ..Behaviour::default() }, 0, limit)})
        }
    };
    Json(body).into_response()
}

/// Never sends headers (sleeps two minutes first).
async fn stall_headers(State(s): Shared, headers: HeaderMap) -> Response {
    if let Some(r) = authorize(&s, &headers) {
        return r;
    }
    tokio::time::sleep(Duration::from_secs(120)).await;
    Json(json!({"late": true})).into_response()
}

/// Sends headers at once, then a JSON body one byte every 300 ms (60 bytes at most).
async fn drip(State(s): Shared, headers: HeaderMap) -> Response {
    if let Some(r) = authorize(&s, &headers) {
        return r;
    }
    let text = format!("{{\"pad\": \"{}\"}}", "x".repeat(48));
    let bytes: Vec<u8> = text.into_bytes();
    let stream = futures::stream::iter(bytes).then(|b| async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b]))
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(axum::body::Body::from_stream(stream))
        .unwrap()
}

/// 302 to the configured place.
async fn redirect(State(s): Shared, headers: HeaderMap) -> Response {
    if let Some(r) = authorize(&s, &headers) {
        return r;
    }
    let to = s.redirect_to.lock().unwrap().clone().unwrap_or_default();
    (StatusCode::FOUND, [("location", to)]).into_response()
}

/// Answers anyone (no token needed), counting.
async fn open(State(s): Shared) -> Json<Value> {
    s.open_requests.fetch_add(1, SeqCst);
    Json(json!({"answered_by": "open"}))
}
