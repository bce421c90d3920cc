//! A GCS JSON API server for the `gcs://` backend, written from Google's API reference
//! (no GCS emulator installs from the registries this project may use, and the one on PyPI
//! returns `null` fields OpenDAL cannot parse). It serves one bucket on loopback, checks a
//! bearer token, and implements what a store needs: simple (`uploadType=media`) and
//! resumable uploads (308 + `Range`, `Content-Range: bytes a-b/total`, status queries,
//! cancel with 499), `ifGenerationMatch` preconditions (412 `conditionNotMet`, checked when
//! a resumable upload finalizes, optionally also when it starts), object GET with
//! `alt=media` and `Range`, metadata, paginated listing by prefix, and delete. Faults: fail
//! chosen resumable chunks, fail the next reads with 503, lose the reply of a commit, let
//! another writer create the object as an upload starts; a public-bucket mode.

use std::collections::{BTreeMap, HashMap};
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use cxpipe::secret::SecretRef;
use cxpipe::storage::{StorageConfig, Store};
use md5::{Digest, Md5};
use serde_json::{Value, json};

pub const BUCKET: &str = "cxpipe-test";
pub const TOKEN: &str = "ya29.cxpipe-test-token";
/// Listing pages are this short so that every listing test also crosses pages.
const PAGE: usize = 3;

struct Object {
    data: Bytes,
    generation: u64,
    updated: String,
}

struct Session {
    name: String,
    query: HashMap<String, String>,
    data: Vec<u8>,
    /// The object resource once finalized, for a status query after a lost response.
    done: Option<Value>,
}

/// The server's state, shared with tests for assertions and faults.
#[derive(Default)]
pub struct FakeGcs {
    objects: Mutex<BTreeMap<String, Object>>,
    sessions: Mutex<HashMap<String, Session>>,
    generation: AtomicU64,
    chunks: AtomicU32,
    /// Resumable chunk numbers (1-based, counted over the server's life) that get a 503.
    pub fail_chunks: Mutex<Vec<u32>>,
    /// This many next object reads (metadata or media) get a 503.
    pub fail_reads: AtomicU32,
    /// Check `ifGenerationMatch` when a resumable session starts, not only when it
    /// finalizes (GCS documents the check at finalization; the fake can do both).
    pub check_at_start: AtomicBool,
    /// Commit the next finalized upload but answer 503, as if the reply were lost.
    pub lose_final_reply: AtomicBool,
    /// When a resumable session starts for this object name, another writer creates it
    /// first (a deterministic race).
    pub race_on_start: Mutex<Option<String>>,
    /// Accept requests without an `Authorization` header (a public bucket).
    pub anonymous: AtomicBool,
    /// Signed-endpoint requests that came without `Authorization`.
    pub unsigned: AtomicU32,
}

impl FakeGcs {
    /// Upload sessions neither finalized nor cancelled.
    pub fn open_sessions(&self) -> usize {
        let sessions = self.sessions.lock().unwrap();
        sessions.values().filter(|s| s.done.is_none()).count()
    }

    /// Objects under `prefix` (stripped from the keys) → SHA-256 of their bytes.
    pub fn objects_sha256(&self, prefix: &str) -> BTreeMap<String, String> {
        let objects = self.objects.lock().unwrap();
        objects
            .iter()
            .filter_map(|(name, o)| Some((name.strip_prefix(prefix)?.to_string(), &o.data)))
            .map(|(key, data)| (key, hex::encode(sha2::Sha256::digest(data))))
            .collect()
    }

    /// Chunk PUTs received so far.
    pub fn chunks_received(&self) -> u32 {
        self.chunks.load(Ordering::SeqCst)
    }

    fn resource(&self, name: &str, o: &Object) -> Value {
        let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&o.data));
        json!({
            "kind": "storage#object",
            "id": format!("{BUCKET}/{name}/{}", o.generation),
            "name": name,
            "bucket": BUCKET,
            "generation": o.generation.to_string(),
            "metageneration": "1",
            "contentType": "application/octet-stream",
            "storageClass": "STANDARD",
            "size": o.data.len().to_string(),
            "md5Hash": md5,
            "etag": etag(o.generation),
            "timeCreated": o.updated,
            "updated": o.updated,
        })
    }

    fn store(&self, name: &str, data: Bytes) -> Value {
        let o = Object {
            data,
            generation: self.generation.fetch_add(1, Ordering::SeqCst) + 1_700_000_000_000_000,
            updated: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let v = self.resource(name, &o);
        self.objects.lock().unwrap().insert(name.to_string(), o);
        v
    }

    /// `ifGenerationMatch` / `ifGenerationNotMatch` against the current object (0 = absent).
    fn precondition(&self, name: &str, q: &HashMap<String, String>) -> Result<(), Reject> {
        let current = self
            .objects
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |o| o.generation);
        let parse = |k: &str| q.get(k).map(|v| v.parse::<u64>().unwrap_or(u64::MAX));
        let failed = parse("ifGenerationMatch").is_some_and(|g| g != current)
            || parse("ifGenerationNotMatch").is_some_and(|g| g == current);
        if failed {
            return Err(Reject(
                StatusCode::PRECONDITION_FAILED,
                "conditionNotMet",
                "At least one of the pre-conditions you specified did not hold.".into(),
            ));
        }
        Ok(())
    }

    fn read_fault(&self) -> Result<(), Reject> {
        let take = self
            .fail_reads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match take {
            Ok(_) => Err(Reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "backendError",
                "injected read fault".into(),
            )),
            Err(_) => Ok(()),
        }
    }
}

fn etag(generation: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(generation.to_be_bytes())
}

/// A refused request: status, GCS error reason and message.
struct Reject(StatusCode, &'static str, String);

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        error(self.0, self.1, &self.2)
    }
}

fn error(status: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message,
        "errors": [{"domain": "global", "reason": reason, "message": message}]}});
    (status, axum::Json(body)).into_response()
}

type Shared = State<Arc<FakeGcs>>;
type Q = Query<HashMap<String, String>>;

fn check(gcs: &FakeGcs, bucket: &str, headers: &HeaderMap) -> Result<(), Reject> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth.is_none() {
        gcs.unsigned.fetch_add(1, Ordering::SeqCst);
    }
    let public = auth.is_none() && gcs.anonymous.load(Ordering::SeqCst);
    if !public && auth != Some(&format!("Bearer {TOKEN}")) {
        return Err(Reject(
            StatusCode::UNAUTHORIZED,
            "required",
            "Login Required.".into(),
        ));
    }
    if bucket != BUCKET {
        return Err(Reject(
            StatusCode::NOT_FOUND,
            "notFound",
            "The specified bucket does not exist.".into(),
        ));
    }
    Ok(())
}

async fn list(
    State(gcs): Shared,
    Path(bucket): Path<String>,
    Query(q): Q,
    h: HeaderMap,
) -> Response {
    if let Err(r) = check(&gcs, &bucket, &h) {
        return r.into_response();
    }
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let delimiter = q.get("delimiter").filter(|d| !d.is_empty());
    let page = q
        .get("maxResults")
        .and_then(|m| m.parse().ok())
        .map_or(PAGE, |m: usize| m.min(PAGE));
    let after = q.get("pageToken").or(q.get("startOffset"));
    let objects = gcs.objects.lock().unwrap();
    let (mut items, mut prefixes) = (Vec::new(), Vec::<String>::new());
    let (mut last, mut next) = (None::<&String>, None);
    let candidates = objects.iter().filter(|(name, _)| {
        name.starts_with(&prefix)
            && match (after, q.contains_key("pageToken")) {
                (Some(a), true) => name.as_str() > a.as_str(),
                (Some(a), false) => name.as_str() >= a.as_str(),
                (None, _) => true,
            }
    });
    for (name, o) in candidates {
        let rest = &name[prefix.len()..];
        let common = delimiter
            .and_then(|d| rest.find(d.as_str()).map(|i| i + d.len()))
            .map(|end| format!("{prefix}{}", &rest[..end]));
        let new_entry = common.as_ref().is_none_or(|p| !prefixes.contains(p));
        if new_entry && items.len() + prefixes.len() == page {
            // The token names the last name consumed; the next page starts after it.
            next = last.cloned();
            break;
        }
        match common {
            Some(p) if new_entry => prefixes.push(p),
            Some(_) => {}
            None => items.push(gcs.resource(name, o)),
        }
        last = Some(name);
    }
    let mut body = json!({"kind": "storage#objects", "items": items, "prefixes": prefixes});
    if let Some(t) = next {
        body["nextPageToken"] = json!(t);
    }
    axum::Json(body).into_response()
}

async fn get_object(
    State(gcs): Shared,
    Path((bucket, name)): Path<(String, String)>,
    Query(q): Q,
    h: HeaderMap,
) -> Response {
    if let Err(r) = check(&gcs, &bucket, &h).and_then(|_| gcs.read_fault()) {
        return r.into_response();
    }
    if let Err(r) = gcs.precondition(&name, &q) {
        return r.into_response();
    }
    let objects = gcs.objects.lock().unwrap();
    let Some(o) = objects.get(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            "notFound",
            &format!("No such object: {BUCKET}/{name}"),
        );
    };
    if q.get("alt").map(String::as_str) != Some("media") {
        return axum::Json(gcs.resource(&name, o)).into_response();
    }
    let total = o.data.len() as u64;
    let range = h.get(header::RANGE).and_then(|v| v.to_str().ok());
    let mut resp = match range.map(|r| parse_range(r, total)) {
        None => (StatusCode::OK, o.data.clone()).into_response(),
        Some(Some((a, b))) => {
            let mut r = (
                StatusCode::PARTIAL_CONTENT,
                o.data.slice(a as usize..=b as usize),
            )
                .into_response();
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                format!("bytes {a}-{b}/{total}").parse().unwrap(),
            );
            r
        }
        Some(None) => {
            return error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalid",
                "Requested range not satisfiable",
            );
        }
    };
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        "application/octet-stream".parse().unwrap(),
    );
    headers.insert(
        header::ETAG,
        format!("\"{}\"", etag(o.generation)).parse().unwrap(),
    );
    headers.insert(
        "x-goog-generation",
        o.generation.to_string().parse().unwrap(),
    );
    resp
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` within `total`; `None` when unsatisfiable.
fn parse_range(r: &str, total: u64) -> Option<(u64, u64)> {
    let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
    let (a, b) = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(a), Some(b)) => (a, b.min(total.checked_sub(1)?)),
        (Some(a), None) => (a, total.checked_sub(1)?),
        (None, Some(n)) => (total.saturating_sub(n), total.checked_sub(1)?),
        (None, None) => return None,
    };
    (a <= b).then_some((a, b))
}

async fn delete_object(
    State(gcs): Shared,
    Path((bucket, name)): Path<(String, String)>,
    Query(q): Q,
    h: HeaderMap,
) -> Response {
    if let Err(r) = check(&gcs, &bucket, &h).and_then(|_| gcs.precondition(&name, &q)) {
        return r.into_response();
    }
    match gcs.objects.lock().unwrap().remove(&name) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "notFound",
            &format!("No such object: {BUCKET}/{name}"),
        ),
    }
}

/// `POST /upload/...?uploadType=media|resumable&name=...`.
async fn insert(
    State(gcs): Shared,
    Path(bucket): Path<String>,
    Query(q): Q,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check(&gcs, &bucket, &h) {
        return r.into_response();
    }
    let Some(name) = q.get("name").cloned() else {
        return error(
            StatusCode::BAD_REQUEST,
            "required",
            "Required parameter: name",
        );
    };
    match q.get("uploadType").map(String::as_str) {
        Some("media") => match gcs.precondition(&name, &q) {
            Ok(()) => axum::Json(gcs.store(&name, body)).into_response(),
            Err(r) => r.into_response(),
        },
        Some("resumable") => {
            let racer = gcs.race_on_start.lock().unwrap().take_if(|n| *n == name);
            if racer.is_some() {
                gcs.store(&name, Bytes::from_static(b"the other writer's object"));
            }
            if gcs.check_at_start.load(Ordering::SeqCst)
                && let Err(r) = gcs.precondition(&name, &q)
            {
                return r.into_response();
            }
            let id = uuid::Uuid::new_v4().simple().to_string();
            let host = h
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let location = format!(
                "http://{host}/upload/storage/v1/b/{bucket}/o?uploadType=resumable&upload_id={id}"
            );
            let session = Session {
                name,
                query: q,
                data: Vec::new(),
                done: None,
            };
            gcs.sessions.lock().unwrap().insert(id, session);
            (StatusCode::OK, [(header::LOCATION, location)]).into_response()
        }
        other => error(
            StatusCode::BAD_REQUEST,
            "invalidParameter",
            &format!("uploadType {other:?} is not served by this test server"),
        ),
    }
}

/// A resumable upload's `Content-Range`: the chunk's byte range (none for a status query)
/// and the object's total size once the client knows it.
struct ContentRange {
    range: Option<(u64, u64)>,
    total: Option<u64>,
}

/// `bytes a-b/total`, `bytes a-b/*` or `bytes */total`.
fn parse_content_range(v: &str) -> Option<ContentRange> {
    let (range, total) = v.strip_prefix("bytes ")?.split_once('/')?;
    let range = match range {
        "*" => None,
        r => {
            let (a, b) = r.split_once('-')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        }
    };
    let total = match total {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some(ContentRange { range, total })
}

/// `PUT` of a resumable session: a chunk, the last chunk, or a status query.
async fn upload_chunk(State(gcs): Shared, Query(q): Q, h: HeaderMap, body: Bytes) -> Response {
    let n = gcs.chunks.fetch_add(1, Ordering::SeqCst) + 1;
    let Some(id) = q.get("upload_id") else {
        return error(
            StatusCode::BAD_REQUEST,
            "required",
            "Required parameter: upload_id",
        );
    };
    let content_range = h.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok());
    let Some(ContentRange { range, total }) = content_range.and_then(parse_content_range) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "bad or missing Content-Range",
        );
    };
    if gcs.fail_chunks.lock().unwrap().contains(&n) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "backendError",
            "injected chunk fault",
        );
    }
    let mut sessions = gcs.sessions.lock().unwrap();
    let Some(s) = sessions.get_mut(id) else {
        return error(StatusCode::NOT_FOUND, "notFound", "No such upload session");
    };
    if let Some(done) = &s.done {
        return axum::Json(done.clone()).into_response();
    }
    if let Some((a, b)) = range {
        // GCS: every chunk but the last is a multiple of 256 KiB.
        if total.is_none() && body.len() % (256 * 1024) != 0 {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid",
                "a non-final chunk must be a multiple of 256 KiB",
            );
        }
        let have = s.data.len() as u64;
        if a > have || b + 1 != a + body.len() as u64 {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid",
                "chunk does not continue the upload",
            );
        }
        // A resent chunk may overlap what is already persisted; GCS keeps the first copy.
        s.data.extend_from_slice(&body[(have - a) as usize..]);
    }
    let have = s.data.len() as u64;
    if total.is_some_and(|t| t < have) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "more bytes than the declared total",
        );
    }
    if total != Some(have) {
        let mut r = Response::builder().status(StatusCode::PERMANENT_REDIRECT);
        if have > 0 {
            r = r.header(header::RANGE, format!("bytes=0-{}", have - 1));
        }
        return r.body(axum::body::Body::empty()).unwrap();
    }
    let (name, query) = (s.name.clone(), s.query.clone());
    if let Err(r) = gcs.precondition(&name, &query) {
        sessions.remove(id);
        return r.into_response();
    }
    let data = Bytes::from(std::mem::take(&mut s.data));
    let resource = gcs.store(&name, data);
    s.done = Some(resource.clone());
    if gcs.lose_final_reply.swap(false, Ordering::SeqCst) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "backendError",
            "injected lost reply",
        );
    }
    axum::Json(resource).into_response()
}

async fn cancel(State(gcs): Shared, Query(q): Q) -> Response {
    let removed = q
        .get("upload_id")
        .and_then(|id| gcs.sessions.lock().unwrap().remove(id));
    match removed {
        Some(_) => StatusCode::from_u16(499).unwrap().into_response(),
        None => error(StatusCode::NOT_FOUND, "notFound", "No such upload session"),
    }
}

/// Starts the server on a loopback port of the current runtime.
pub async fn start() -> (Arc<FakeGcs>, String) {
    let gcs = Arc::new(FakeGcs::default());
    let app = Router::new()
        .route("/storage/v1/b/{bucket}/o", get(list))
        .route(
            "/storage/v1/b/{bucket}/o/{*name}",
            get(get_object).delete(delete_object),
        )
        .route(
            "/upload/storage/v1/b/{bucket}/o",
            post(insert).put(upload_chunk).delete(cancel),
        )
        .layer(DefaultBodyLimit::max(64 << 20))
        .with_state(gcs.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (gcs, endpoint)
}

/// The object-name prefix of a store made by [`store`] (`run-UUID/`).
pub fn prefix_of(store: &Store) -> String {
    let desc = store.describe();
    let path = desc.split(" (").next().unwrap_or("");
    let root = path.trim_start_matches(&format!("gcs://{BUCKET}/"));
    format!("{root}/")
}

/// A store of the test bucket under `root`, configured the way a user would: the endpoint,
/// and a token file in `dir` (or `anonymous = true` when `token` is `None`).
pub fn open(endpoint: &str, root: &str, token: Option<&str>, dir: &FsPath) -> Store {
    let token = token.map(|t| {
        std::fs::write(dir.join("gcs-token"), t).unwrap();
        SecretRef::File(dir.join("gcs-token"))
    });
    let cfg = StorageConfig {
        uri: format!("gcs://{BUCKET}/{root}"),
        endpoint: Some(endpoint.to_string()),
        anonymous: token.is_none().then_some(true),
        token,
        ..StorageConfig::default()
    };
    Store::from_config(&cfg, dir).unwrap()
}

/// A store on a fresh server, under a fresh prefix, with the right token.
pub async fn store() -> (Store, Arc<FakeGcs>, tempfile::TempDir) {
    let (gcs, endpoint) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = format!("run-{}", uuid::Uuid::new_v4());
    (open(&endpoint, &root, Some(TOKEN), dir.path()), gcs, dir)
}
