//! A small media server for fetch tests: serves bytes with Range/If-Range and ETag, and
//! can reset connections, truncate bodies, ignore Range, expire URLs, throttle, or fail.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// Fault knobs.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Each response breaks the connection after this many body bytes.
    pub reset_every: Option<u64>,
    /// The first response ends cleanly after this many bytes, without a `Content-Length`.
    pub truncate_first_at: Option<u64>,
    /// No response says how long its body is.
    pub no_length: bool,
    /// The first ranged request is answered with a full `200`.
    pub ignore_range_once: bool,
    /// URLs expire this long after they are signed (403 after).
    pub url_ttl: Option<Duration>,
    /// Sleep this long between 64 KiB chunks.
    pub chunk_delay: Option<Duration>,
    /// Answer every request with this status.
    pub always_status: Option<u16>,
    /// Status of an expired URL (default 403; GCS says 400).
    pub expired_status: Option<u16>,
    /// After the first response, the object is replaced by these bytes (new ETag).
    pub replace_after_first: Option<Bytes>,
    /// Serve ranges even when `If-Range` no longer matches (a broken cache).
    pub ignore_if_range: bool,
    /// Send neither `ETag` nor `Last-Modified`.
    pub no_validator: bool,
    /// Every ranged request is answered with a full `200`.
    pub ignore_range_always: bool,
    /// `416` answers carry no `Content-Range`.
    pub bare_416: bool,
    /// Send the body one byte per this interval (headers at once).
    pub drip: Option<Duration>,
    /// Label bodies with this `Content-Encoding` (the bytes stay as they are).
    pub content_encoding: Option<&'static str>,
}

struct Shared {
    /// The object and its ETag (both change with `replace_after_first`).
    data: Mutex<(Bytes, &'static str)>,
    faults: Faults,
    started: Instant,
    requests: AtomicU64,
    range_requests: AtomicU64,
    if_range_requests: AtomicU64,
    forbidden: AtomicU64,
    ignored_range: Mutex<bool>,
    truncated: Mutex<bool>,
}

/// A running media server.
#[derive(Clone)]
pub struct MediaServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl MediaServer {
    pub async fn start(data: Bytes, faults: Faults) -> MediaServer {
        let shared = Arc::new(Shared {
            data: Mutex::new((data, ETAG)),
            faults,
            started: Instant::now(),
            requests: AtomicU64::new(0),
            range_requests: AtomicU64::new(0),
            if_range_requests: AtomicU64::new(0),
            forbidden: AtomicU64::new(0),
            ignored_range: Mutex::new(false),
            truncated: Mutex::new(false),
        });
        let app = Router::new()
            .route("/media/rec.wav", axum::routing::get(serve))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        MediaServer { addr, shared }
    }

    /// A URL valid for the configured TTL from now.
    pub fn sign(&self) -> String {
        let now = self.shared.started.elapsed().as_millis() as u64;
        format!(
            "http://{}/media/rec.wav?signed={now}&X-Amz-Signature=secret",
            self.addr
        )
    }

    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }
    pub fn range_requests(&self) -> u64 {
        self.shared.range_requests.load(Ordering::SeqCst)
    }
    pub fn if_range_requests(&self) -> u64 {
        self.shared.if_range_requests.load(Ordering::SeqCst)
    }
    pub fn forbidden(&self) -> u64 {
        self.shared.forbidden.load(Ordering::SeqCst)
    }
}

#[derive(serde::Deserialize)]
struct Signed {
    signed: u64,
}

const ETAG: &str = "\"v1-abc\"";
const ETAG_V2: &str = "\"v2-def\"";

async fn serve(
    State(s): State<Arc<Shared>>,
    Query(q): Query<Signed>,
    headers: HeaderMap,
) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(code) = s.faults.always_status {
        return StatusCode::from_u16(code).unwrap().into_response();
    }
    if let Some(ttl) = s.faults.url_ttl
        && s.started.elapsed().as_millis() as u64 > q.signed + ttl.as_millis() as u64
    {
        s.forbidden.fetch_add(1, Ordering::SeqCst);
        let status = StatusCode::from_u16(s.faults.expired_status.unwrap_or(403)).unwrap();
        return (status, "Request has expired").into_response();
    }
    let (data, etag) = {
        let mut current = s.data.lock().unwrap();
        let served = current.clone();
        if let Some(next) = &s.faults.replace_after_first
            && current.1 == ETAG
        {
            *current = (next.clone(), ETAG_V2);
        }
        served
    };
    let total = data.len() as u64;
    let mut start = 0u64;
    let mut partial = false;
    if let Some(r) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        s.range_requests.fetch_add(1, Ordering::SeqCst);
        let if_range_ok = match headers.get(header::IF_RANGE) {
            Some(v) => {
                s.if_range_requests.fetch_add(1, Ordering::SeqCst);
                v == etag || s.faults.ignore_if_range
            }
            None => true,
        };
        let ignore = {
            let mut done = s.ignored_range.lock().unwrap();
            let ignore = (s.faults.ignore_range_once && !*done) || s.faults.ignore_range_always;
            *done |= ignore;
            ignore
        };
        if if_range_ok && !ignore {
            let from = r.trim_start_matches("bytes=").trim_end_matches('-');
            start = from.parse().unwrap();
            partial = true;
        }
    }
    if start >= total {
        let mut r = Response::builder().status(StatusCode::RANGE_NOT_SATISFIABLE);
        if !s.faults.bare_416 {
            r = r.header(header::CONTENT_RANGE, format!("bytes */{total}"));
        }
        return r.body(Body::empty()).unwrap();
    }
    let mut end = total;
    let mut send_length = !s.faults.no_length;
    {
        let mut t = s.truncated.lock().unwrap();
        if let Some(at) = s.faults.truncate_first_at
            && !*t
        {
            *t = true;
            end = at.min(total);
            send_length = false;
        }
    }
    let reset_at = s.faults.reset_every.map(|n| start + n);
    let delay = s.faults.chunk_delay.or(s.faults.drip);
    let chunk = if s.faults.drip.is_some() {
        1
    } else {
        64 * 1024
    };
    let stream = futures::stream::unfold(start, move |pos| {
        let data = data.clone();
        async move {
            if pos >= end {
                return None;
            }
            if let Some(r) = reset_at
                && pos >= r
            {
                return Some((Err(std::io::Error::other("reset")), u64::MAX));
            }
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let mut next = (pos + chunk).min(end);
            if let Some(r) = reset_at {
                next = next.min(r.max(pos + 1));
            }
            Some((
                Ok::<_, std::io::Error>(data.slice(pos as usize..next as usize)),
                next,
            ))
        }
    });
    let mut resp = Response::builder().header(header::ACCEPT_RANGES, "bytes");
    if !s.faults.no_validator {
        resp = resp.header(header::ETAG, etag);
    }
    if let Some(enc) = s.faults.content_encoding {
        resp = resp.header(header::CONTENT_ENCODING, enc);
    }
    if send_length {
        resp = resp.header(header::CONTENT_LENGTH, total - start);
    }
    resp = if partial {
        resp.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{total}", total - 1),
        )
    } else {
        resp.status(StatusCode::OK)
    };
    resp.body(Body::from_stream(stream)).unwrap()
}
