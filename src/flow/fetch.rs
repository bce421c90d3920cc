//! Resumable HTTP download of one URL into a channel of chunks: `Range` + `If-Range` after
//! a reset or truncation, `Content-Range` and total length checked, restart from zero on a
//! `200` or when the object changed (its `ETag`/`Last-Modified` differs), and a
//! [`FetchOutcome::Refresh`] when the URL was refused (400/401/403/410: expired or bad
//! signature) so the caller can get a fresh one. State survives URL changes, so no byte is
//! fetched twice. Without a validator a resume could splice two versions of an object, so
//! the download restarts from zero instead, unless `.expect_sha256()` will catch a splice.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE,
    RETRY_AFTER,
};
use tokio::sync::mpsc;

use super::error::{FlowError, redact_url};
use super::source::SourceMsg;

/// What the fetch sends downstream.
#[derive(Debug)]
pub enum Chunk {
    Data(Bytes),
    /// Discard everything sent so far: the body starts again at byte 0.
    Restart,
}

/// How hard a fetch tries.
#[derive(Clone, Debug)]
pub struct FetchPolicy {
    /// Consecutive failed attempts (the first may have made progress) before giving up.
    pub tries: u32,
    /// Longest wait for response headers or for the next body chunk.
    pub read_timeout: Duration,
    /// The body must bring at least `min_progress_bytes` per `min_progress_window`, or the
    /// attempt fails as too slow (and counts as a failure without progress, so a dripping
    /// server runs out of tries instead of resetting them with each trickle).
    pub min_progress_bytes: u64,
    /// See `min_progress_bytes`.
    pub min_progress_window: Duration,
    /// First retry delay; doubles per consecutive failure, capped at 5 s, jittered.
    pub backoff: Duration,
    /// The item's deadline, if any.
    pub deadline: Option<Instant>,
    /// Size the flow expects (its first `.expect_size(n)`), used when the server does not
    /// say how long the body is, so a silently truncated body is still resumed.
    pub expected_total: Option<u64>,
    /// The flow checks the source bytes' SHA-256 (`.expect_sha256()`), so resuming without
    /// a validator is safe: a splice of two versions would fail that check.
    pub hash_checked: bool,
}

/// Default progress rule for media bodies: 16 KiB per 15 s (a dial-up modem's pace;
/// presigned media from a healthy store moves orders of magnitude faster). These are
/// process-wide: fetch has no tenant; a flow-level override would be set on its policy.
pub const DEFAULT_MIN_PROGRESS_BYTES: u64 = 16 * 1024;
/// See [`DEFAULT_MIN_PROGRESS_BYTES`].
pub const DEFAULT_MIN_PROGRESS_WINDOW: Duration = Duration::from_secs(15);

impl Default for FetchPolicy {
    fn default() -> Self {
        FetchPolicy {
            tries: super::spec::DEFAULT_TRIES,
            read_timeout: Duration::from_secs(30),
            min_progress_bytes: DEFAULT_MIN_PROGRESS_BYTES,
            min_progress_window: DEFAULT_MIN_PROGRESS_WINDOW,
            backoff: Duration::from_millis(200),
            deadline: None,
            expected_total: None,
            hash_checked: false,
        }
    }
}

impl FetchPolicy {
    /// `wait`, shortened so no wait outlasts the deadline.
    pub fn wait_limit(&self, wait: Duration) -> Duration {
        match self.deadline {
            Some(d) => wait.min(d.saturating_duration_since(Instant::now())),
            None => wait,
        }
    }
}

/// Progress of a download across attempts and URLs.
#[derive(Clone, Debug, Default)]
pub struct FetchState {
    /// Bytes of the body delivered downstream (since the last restart).
    pub offset: u64,
    /// Total length, once a response has told it.
    pub total: Option<u64>,
    /// Strong ETag or Last-Modified of the first response, for `If-Range`.
    pub validator: Option<String>,
    /// Consecutive failures.
    pub failures: u32,
    /// The furthest offset any attempt reached: only getting past it counts as progress, so
    /// a server that keeps restarting the body cannot reset the failure count forever.
    pub high_water: u64,
    /// Requests sent.
    pub attempts: u32,
    /// Times the body restarted from zero.
    pub restarts: u32,
    /// Fresh URLs obtained.
    pub refreshes: u32,
    /// Bytes received over the network, including ones later discarded.
    pub received: u64,
    /// The body came without any length: after it ends, one ranged request confirms it.
    lengthless: bool,
    probed: bool,
    last_reason: String,
    last_status: Option<u16>,
}

/// How one URL's transfer ended.
#[derive(Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The whole body was delivered.
    Done,
    /// The URL was refused as expired or forbidden; a fresh URL may work.
    Refresh { status: u16 },
}

/// The download client: no automatic decompression, no total timeout on bodies.
pub fn client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .pool_idle_timeout(Duration::from_secs(30))
                // Offsets count stored bytes: never let a decoder change them.
                .no_gzip()
                .no_brotli()
                .no_deflate()
                .no_zstd()
                .build()
                .expect("static reqwest client configuration")
        })
        .clone()
}

enum Attempt {
    Done,
    /// The body ended without a known length: ask for the rest to confirm the end.
    Probe,
    Refresh(u16),
    /// Retry after this failure; `progress` says whether bytes arrived.
    Retry {
        reason: String,
        status: Option<u16>,
        progress: bool,
        wait: Option<Duration>,
    },
    Fatal {
        reason: String,
        status: Option<u16>,
    },
}

/// Downloads `url` (with `bearer` as its `Authorization` when given) from `state.offset`
/// into `tx` until done, refreshed, or given up.
pub async fn transfer(
    url: &str,
    bearer: Option<&str>,
    state: &mut FetchState,
    policy: &FetchPolicy,
    tx: &mpsc::Sender<SourceMsg>,
) -> Result<FetchOutcome, FlowError> {
    let client = client();
    loop {
        if let Some(d) = policy.deadline
            && Instant::now() >= d
        {
            return Err(FlowError::Deadline {
                received: state.received,
            });
        }
        state.attempts += 1;
        let attempt = one_attempt(&client, url, bearer, state, policy, tx).await?;
        match attempt {
            Attempt::Done => return Ok(FetchOutcome::Done),
            Attempt::Probe => state.probed = true,
            Attempt::Refresh(status) => return Ok(FetchOutcome::Refresh { status }),
            Attempt::Fatal { reason, status } => {
                state.failures += 1;
                return Err(give_up(url, state, reason, status, false));
            }
            Attempt::Retry {
                reason,
                status,
                progress,
                wait,
            } => {
                if progress && state.offset > state.high_water {
                    state.failures = 0;
                }
                state.high_water = state.high_water.max(state.offset);
                state.failures += 1;
                tracing::debug!(url = %redact_url(url), offset = state.offset, failures = state.failures, %reason, "fetch attempt failed");
                if state.failures >= policy.tries {
                    return Err(give_up(url, state, reason, status, true));
                }
                state.last_reason = reason;
                state.last_status = status;
                tokio::time::sleep(
                    policy.wait_limit(wait.unwrap_or_else(|| backoff(policy, state.failures))),
                )
                .await;
            }
        }
    }
}

/// The error after the last try.
pub fn give_up(
    url: &str,
    state: &FetchState,
    reason: String,
    status: Option<u16>,
    retryable: bool,
) -> FlowError {
    FlowError::Fetch {
        url: redact_url(url),
        tries: state.attempts,
        received: state.received,
        reason,
        status,
        retryable,
    }
}

/// Longest pause between download attempts.
const MAX_FETCH_BACKOFF: Duration = Duration::from_secs(5);

/// The pause before retry number `failures` (≥ 1): the shared jittered, doubling
/// [`Backoff`](crate::api::backoff::Backoff) from `policy.backoff`, at most 5 s. A server's
/// `Retry-After` takes precedence where the caller has one.
pub fn backoff(policy: &FetchPolicy, failures: u32) -> Duration {
    crate::api::backoff::Backoff {
        base: policy.backoff,
        max: MAX_FETCH_BACKOFF,
    }
    .delay(failures.saturating_sub(1))
}

async fn one_attempt(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    state: &mut FetchState,
    policy: &FetchPolicy,
    tx: &mpsc::Sender<SourceMsg>,
) -> Result<Attempt, FlowError> {
    let mut req = client.get(url).header(ACCEPT_ENCODING, "identity");
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    // (The one probe after a length-less body only confirms its end.)
    if state.offset > 0 && state.validator.is_none() && !policy.hash_checked && !state.probed {
        let why = "the server sent no ETag or Last-Modified, so a resume could mix two versions";
        restart_from_zero(url, state, tx, why).await?;
    }
    if state.offset > 0 {
        req = req.header(RANGE, format!("bytes={}-", state.offset));
        if let Some(v) = &state.validator {
            req = req.header(IF_RANGE, v);
        }
    }
    let resp = match tokio::time::timeout(policy.wait_limit(policy.read_timeout), req.send()).await
    {
        Err(_) => return Ok(retry("no response headers in time".into(), None, false)),
        Ok(Err(e)) => {
            return Ok(retry(
                format!("request failed: {}", chain(e.without_url())),
                None,
                false,
            ));
        }
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    let code = Some(status.as_u16());
    if status.is_success()
        && let Some(enc) = resp.headers().get(CONTENT_ENCODING)
        && !enc.as_bytes().eq_ignore_ascii_case(b"identity")
    {
        return Ok(fatal(
            format!(
                "the server encoded the body ({}) although identity was asked for; byte offsets would not match",
                String::from_utf8_lossy(enc.as_bytes())
            ),
            code,
        ));
    }
    match status {
        StatusCode::OK if state.probed && state.total.is_none() => {
            tracing::warn!(url = %redact_url(url), bytes = state.offset, "server ignores Range and sends no length; the end cannot be confirmed");
            return Ok(Attempt::Done);
        }
        StatusCode::OK => {
            if state.offset > 0 {
                let why = "the server sent the whole body again";
                restart_from_zero(url, state, tx, why).await?;
            }
            state.total = resp.content_length().or(policy.expected_total);
            state.lengthless = state.total.is_none();
            state.validator = validator(&resp);
        }
        StatusCode::PARTIAL_CONTENT => {
            let range = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok());
            let now = validator(&resp);
            let changed = match (&state.validator, &now) {
                (Some(had), Some(now)) if had != now => {
                    Some(format!("the object changed (validator {had} became {now})"))
                }
                _ => None,
            };
            if state.offset > 0
                && let Some(reason) = changed
            {
                let why = "the object changed during the download";
                restart_from_zero(url, state, tx, why).await?;
                state.validator = None;
                state.total = None;
                return Ok(retry(reason, code, false));
            }
            match parse_content_range(range) {
                Some((start, _, total)) if start == state.offset => {
                    if state.validator.is_none() {
                        state.validator = now;
                    }
                    if let (Some(known), Some(t)) = (state.total, total)
                        && known != t
                    {
                        return Ok(fatal(
                            format!("total length changed from {known} to {t}"),
                            code,
                        ));
                    }
                    state.total = total.or(state.total);
                }
                Some((start, _, _)) => {
                    return Ok(retry(
                        format!(
                            "asked for byte {} but Content-Range starts at {start}",
                            state.offset
                        ),
                        code,
                        false,
                    ));
                }
                None => {
                    return Ok(retry(
                        format!("206 with unusable Content-Range {range:?}"),
                        code,
                        false,
                    ));
                }
            }
        }
        // Expired or badly signed presigned URLs: S3 answers 403 (or 400 for an expired
        // STS token), GCS 400, other stores 401/410.
        StatusCode::BAD_REQUEST
        | StatusCode::UNAUTHORIZED
        | StatusCode::FORBIDDEN
        | StatusCode::GONE => {
            return Ok(Attempt::Refresh(status.as_u16()));
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            let total = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().strip_prefix("bytes */"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .or(state.total);
            if total == Some(state.offset) {
                return Ok(Attempt::Done);
            }
            // The confirming probe of a body that came without a length: nothing is left.
            if state.probed && total.is_none() && state.offset > 0 {
                return Ok(Attempt::Done);
            }
            return Ok(fatal(
                format!("416 at byte {} of {total:?}", state.offset),
                code,
            ));
        }
        StatusCode::NOT_FOUND => return Ok(fatal("not found (404)".into(), code)),
        s if s == StatusCode::TOO_MANY_REQUESTS
            || s == StatusCode::REQUEST_TIMEOUT
            || s.is_server_error() =>
        {
            let wait = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s.min(60)));
            return Ok(Attempt::Retry {
                reason: format!("server answered {s}"),
                status: code,
                progress: false,
                wait,
            });
        }
        s => return Ok(fatal(format!("server answered {s}"), code)),
    }
    let mut resp = resp;
    let mut progress = false;
    let mut watch = crate::api::http::BodyWatch::new(crate::api::http::StallRules {
        header_timeout: policy.read_timeout,
        min_progress_bytes: policy.min_progress_bytes.max(1),
        min_progress_window: policy.min_progress_window.max(Duration::from_millis(1)),
    });
    loop {
        if let Some(d) = policy.deadline
            && Instant::now() >= d
        {
            return Err(FlowError::Deadline {
                received: state.received,
            });
        }
        match tokio::time::timeout(
            policy.wait_limit(policy.read_timeout),
            watch.next_chunk(&mut resp),
        )
        .await
        {
            Err(_) => {
                return Ok(retry(
                    format!("body stalled at byte {}", state.offset),
                    code,
                    progress,
                ));
            }
            Ok(Err(stall @ crate::api::http::Stall::Body { .. })) => {
                // Too slow counts as no progress, however many bytes trickled in.
                return Ok(retry(
                    format!("at byte {}: {}", state.offset, stall.describe()),
                    code,
                    false,
                ));
            }
            Ok(Err(crate::api::http::Stall::Transport(e))) => {
                return Ok(retry(
                    format!(
                        "connection failed at byte {}: {}",
                        state.offset,
                        chain(e.without_url())
                    ),
                    code,
                    progress,
                ));
            }
            Ok(Err(stall @ crate::api::http::Stall::Headers(_))) => {
                return Ok(retry(stall.describe(), code, progress));
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(bytes))) => {
                let n = bytes.len() as u64;
                if let Some(t) = state.total
                    && state.offset + n > t
                {
                    return Ok(fatal(format!("body longer than its length {t}"), code));
                }
                state.received += n;
                state.offset += n;
                progress |= n > 0;
                send(tx, Chunk::Data(bytes)).await?;
            }
        }
    }
    match state.total {
        Some(t) if state.offset < t => Ok(retry(
            format!("body ended at byte {} of {t}", state.offset),
            code,
            progress,
        )),
        None if state.lengthless && !state.probed && state.offset > 0 => Ok(Attempt::Probe),
        _ => Ok(Attempt::Done),
    }
}

/// An error with its causes, `a: b: c` (reqwest's own text leaves them out).
fn chain(e: reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn retry(reason: String, status: Option<u16>, progress: bool) -> Attempt {
    Attempt::Retry {
        reason,
        status,
        progress,
        wait: None,
    }
}

fn fatal(reason: String, status: Option<u16>) -> Attempt {
    Attempt::Fatal { reason, status }
}

/// Tells the flow to drop what it has (hashes, transforms, the upload) and start over.
async fn restart_from_zero(
    url: &str,
    state: &mut FetchState,
    tx: &mpsc::Sender<SourceMsg>,
    why: &str,
) -> Result<(), FlowError> {
    tracing::info!(url = %redact_url(url), offset = state.offset, "{why}; restarting from zero");
    send(tx, Chunk::Restart).await?;
    state.offset = 0;
    state.restarts += 1;
    Ok(())
}

async fn send(tx: &mpsc::Sender<SourceMsg>, chunk: Chunk) -> Result<(), FlowError> {
    tx.send(SourceMsg::Chunk(chunk))
        .await
        .map_err(|_| FlowError::Internal("the flow stopped reading the download".into()))
}

fn validator(resp: &reqwest::Response) -> Option<String> {
    let h = resp.headers();
    let etag = h.get(ETAG).and_then(|v| v.to_str().ok());
    match etag {
        Some(e) if !e.starts_with("W/") => Some(e.to_string()),
        _ => h
            .get(LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    }
}

/// Parses `bytes START-END/TOTAL` (TOTAL may be `*`).
pub fn parse_content_range(v: Option<&str>) -> Option<(u64, u64, Option<u64>)> {
    let rest = v?.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    if b < a {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => {
            let t: u64 = t.parse().ok()?;
            if b >= t {
                return None;
            }
            Some(t)
        }
    };
    Some((a, b, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_parsed_and_checked() {
        assert_eq!(
            parse_content_range(Some("bytes 10-19/100")),
            Some((10, 19, Some(100)))
        );
        assert_eq!(parse_content_range(Some("bytes 0-0/*")), Some((0, 0, None)));
        assert_eq!(parse_content_range(Some("bytes 10-200/100")), None);
        assert_eq!(parse_content_range(Some("bytes 9-3/100")), None);
        assert_eq!(parse_content_range(Some("items 1-2/3")), None);
        assert_eq!(parse_content_range(None), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = FetchPolicy {
            backoff: Duration::from_millis(100),
            ..FetchPolicy::default()
        };
        assert!(backoff(&p, 1) <= Duration::from_millis(100));
        assert!(backoff(&p, 1) >= Duration::from_millis(50));
        assert!(backoff(&p, 3) >= Duration::from_millis(200));
        assert!(backoff(&p, 30) <= MAX_FETCH_BACKOFF);
        assert!(backoff(&p, 30) >= MAX_FETCH_BACKOFF / 2);
    }
}
