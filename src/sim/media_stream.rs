//! Serving generated media over HTTP: `Range` (single ranges, suffix ranges, `If-Range`),
//! `Content-Range`, `ETag`, and the stream faults: connection resets, silent truncation,
//! and aborting when the presigned URL expires mid-transfer.

use std::io;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::stream;

use super::media::{MediaSource, MediaSpec};
use super::state::SimState;
use super::stats::bump;

/// A byte range `start..end` (end exclusive) of an object of `total` bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// Result of reading a `Range` header against an object size.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No (usable) range: send everything with 200.
    Whole,
    Partial(ByteRange),
    /// 416.
    Unsatisfiable,
}

/// Parses `Range: bytes=a-b | a- | -n`. Multiple ranges are answered whole.
pub fn parse_range(value: Option<&str>, total: u64) -> RangeRequest {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Whole;
    };
    if spec.contains(',') {
        return RangeRequest::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeRequest::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(start), None) if b.is_empty() => (start, total),
        (Some(start), Some(last)) if last >= start => (start, (last + 1).min(total)),
        (None, Some(suffix)) if a.is_empty() && suffix > 0 => (total.saturating_sub(suffix), total),
        _ => return RangeRequest::Whole,
    };
    if range.0 >= total {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial(ByteRange {
        start: range.0,
        end: range.1,
    })
}

/// How a served stream ends early, if it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    Reset(u64),
    Truncate(u64),
}

/// Builds the answer for a GET/HEAD of `spec`. `expires` (Unix seconds) aborts the stream
/// once passed when the faults say so.
pub fn serve(
    state: &Arc<SimState>,
    spec: &MediaSpec,
    headers: &HeaderMap,
    expires: Option<u64>,
) -> Response {
    let total = spec.total();
    let etag = spec.etag();
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v == etag);
    let range_header = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| if_range_ok);
    let (status, range) = match parse_range(range_header, total) {
        RangeRequest::Whole => (
            StatusCode::OK,
            ByteRange {
                start: 0,
                end: total,
            },
        ),
        RangeRequest::Partial(range) => (StatusCode::PARTIAL_CONTENT, range),
        RangeRequest::Unsatisfiable => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            insert(
                &mut response,
                header::CONTENT_RANGE,
                &format!("bytes */{total}"),
            );
            return response;
        }
    };
    let faults = state.faults();
    let length = range.end - range.start;
    let cut = if length > 1 && state.roll(faults.reset_rate) {
        Some(Cut::Reset(
            range.start + (length as f64 * (0.2 + 0.6 * state.draw())) as u64,
        ))
    } else if length > 1 && state.roll(faults.truncate_rate) {
        Some(Cut::Truncate(
            range.start + (length as f64 * (0.2 + 0.6 * state.draw())) as u64,
        ))
    } else {
        None
    };
    let expires = expires.filter(|_| faults.abort_on_url_expiry);
    bump(&state.stats.media_streams);
    let body = Body::from_stream(body_stream(
        state.clone(),
        Arc::new(spec.source()),
        range.start,
        range.end,
        cut,
        expires,
    ));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    insert(
        &mut response,
        header::CONTENT_TYPE,
        spec.format().content_type(),
    );
    insert(&mut response, header::ACCEPT_RANGES, "bytes");
    insert(&mut response, header::ETAG, &etag);
    if !matches!(cut, Some(Cut::Truncate(_))) {
        insert(&mut response, header::CONTENT_LENGTH, &length.to_string());
    }
    if status == StatusCode::PARTIAL_CONTENT {
        insert(
            &mut response,
            header::CONTENT_RANGE,
            &format!("bytes {}-{}/{total}", range.start, range.end - 1),
        );
    }
    response
}

fn insert(response: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn body_stream(
    state: Arc<SimState>,
    source: Arc<MediaSource>,
    start: u64,
    end: u64,
    cut: Option<Cut>,
    expires: Option<u64>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, io::Error>> + Send + 'static {
    let stop = match cut {
        Some(Cut::Reset(at) | Cut::Truncate(at)) => at,
        None => end,
    };
    stream::unfold(Some(start), move |pos| {
        let state = state.clone();
        let source = source.clone();
        async move {
            let pos = pos?;
            if pos >= stop {
                return match cut {
                    Some(Cut::Reset(_)) => {
                        // Let hyper flush what it holds, so the reset lands mid-body.
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        bump(&state.stats.resets);
                        Some((
                            Err(io::Error::new(
                                io::ErrorKind::ConnectionReset,
                                "simulated connection reset",
                            )),
                            None,
                        ))
                    }
                    Some(Cut::Truncate(_)) => {
                        bump(&state.stats.truncations);
                        None
                    }
                    None => None,
                };
            }
            if expires.is_some_and(|at| unix_now() >= at) {
                bump(&state.stats.urls_refused);
                return Some((
                    Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "presigned URL expired mid-transfer",
                    )),
                    None,
                ));
            }
            let piece = source.piece(pos, stop);
            state
                .stats
                .media_bytes
                .fetch_add(piece.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let next = pos + piece.len() as u64;
            Some((Ok(piece), Some(next)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_range_forms() {
        let r = |s| parse_range(Some(s), 1000);
        assert_eq!(
            r("bytes=0-99"),
            RangeRequest::Partial(ByteRange { start: 0, end: 100 })
        );
        assert_eq!(
            r("bytes=900-"),
            RangeRequest::Partial(ByteRange {
                start: 900,
                end: 1000
            })
        );
        assert_eq!(
            r("bytes=-10"),
            RangeRequest::Partial(ByteRange {
                start: 990,
                end: 1000
            })
        );
        assert_eq!(
            r("bytes=990-5000"),
            RangeRequest::Partial(ByteRange {
                start: 990,
                end: 1000
            })
        );
        assert_eq!(r("bytes=1000-"), RangeRequest::Unsatisfiable);
        assert_eq!(r("bytes=0-1,5-6"), RangeRequest::Whole);
        assert_eq!(r("items=0-1"), RangeRequest::Whole);
        assert_eq!(r("bytes=5-1"), RangeRequest::Whole);
        assert_eq!(parse_range(None, 10), RangeRequest::Whole);
    }
}
