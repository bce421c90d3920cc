//! [`HttpClient`]: the tenant's reqwest client plus the two stall rules every API and
//! token call obeys: response headers within `header_timeout`, and a body that keeps
//! moving (at least `min_progress_bytes` per `min_progress_window`). A server that stalls
//! fails the attempt in seconds instead of holding a worker for minutes. Redirects to
//! another origin are refused by the client's redirect policy ([`redirect_policy`]).

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// Stall rules (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct StallRules {
    pub header_timeout: Duration,
    pub min_progress_bytes: u64,
    pub min_progress_window: Duration,
}

/// A reqwest client with [`StallRules`].
#[derive(Clone, Debug)]
pub struct HttpClient {
    pub client: reqwest::Client,
    pub rules: StallRules,
}

/// Why a request or its body did not come through.
#[derive(Debug)]
pub enum Stall {
    /// No response headers within the header timeout.
    Headers(Duration),
    /// The body moved fewer bytes than the minimum in one window.
    Body {
        received: u64,
        in_window: u64,
        rules: StallRules,
    },
    /// A transport error from reqwest.
    Transport(reqwest::Error),
}

impl Stall {
    /// A refused redirect (not worth retrying: the server will redirect again).
    pub fn is_redirect(&self) -> bool {
        matches!(self, Stall::Transport(e) if e.is_redirect())
    }

    /// A message without the URL (callers name it).
    pub fn describe(&self) -> String {
        match self {
            Stall::Headers(after) => {
                format!("no response headers within {after:?} (header_timeout); the server stalled")
            }
            Stall::Body {
                received,
                in_window,
                rules,
            } => format!(
                "the response body stalled: {in_window} bytes in {:?} after {received} bytes, \
                 below the minimum of {} bytes per {:?}",
                rules.min_progress_window, rules.min_progress_bytes, rules.min_progress_window
            ),
            Stall::Transport(e) => crate::api::auth::describe_transport(e),
        }
    }
}

impl HttpClient {
    /// Sends `request`, waiting at most `header_timeout` for the response headers.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, Stall> {
        match tokio::time::timeout(self.rules.header_timeout, request.send()).await {
            Err(_) => Err(Stall::Headers(self.rules.header_timeout)),
            Ok(Err(e)) => Err(Stall::Transport(e)),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// A watchdog for reading `response`'s body chunk by chunk.
    pub fn body(&self) -> BodyWatch {
        BodyWatch::new(self.rules)
    }

    /// The whole body (up to `cap` bytes; `Ok(None)` past it), under the progress rule.
    pub async fn read_to_end(
        &self,
        response: &mut reqwest::Response,
        cap: u64,
    ) -> Result<Option<Vec<u8>>, Stall> {
        let mut watch = self.body();
        let mut bytes = Vec::new();
        while let Some(chunk) = watch.next_chunk(response).await? {
            if (bytes.len() + chunk.len()) as u64 > cap {
                return Ok(None);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Some(bytes))
    }
}

/// Reads a body chunk by chunk, failing when a window passes with too few bytes.
pub struct BodyWatch {
    rules: StallRules,
    window_start: Instant,
    in_window: u64,
    received: u64,
}

impl BodyWatch {
    pub fn new(rules: StallRules) -> Self {
        BodyWatch {
            rules,
            window_start: Instant::now(),
            in_window: 0,
            received: 0,
        }
    }

    /// The next chunk, `None` at the end, or [`Stall::Body`] when a window ended short.
    pub async fn next_chunk(
        &mut self,
        response: &mut reqwest::Response,
    ) -> Result<Option<Bytes>, Stall> {
        loop {
            let window_end = self.window_start + self.rules.min_progress_window;
            match tokio::time::timeout_at(window_end, response.chunk()).await {
                Err(_) => self.close_window()?,
                Ok(Err(e)) => return Err(Stall::Transport(e)),
                Ok(Ok(None)) => return Ok(None),
                Ok(Ok(Some(chunk))) => {
                    let now = Instant::now();
                    if now >= window_end {
                        // Bytes that came after the window closed do not rescue it.
                        self.close_window()?;
                    }
                    self.in_window += chunk.len() as u64;
                    self.received += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
            }
        }
    }

    /// The current window is over: fail if it was short, else start the next one now.
    fn close_window(&mut self) -> Result<(), Stall> {
        if self.in_window < self.rules.min_progress_bytes {
            return Err(Stall::Body {
                received: self.received,
                in_window: self.in_window,
                rules: self.rules,
            });
        }
        self.window_start = Instant::now();
        self.in_window = 0;
        Ok(())
    }
}

/// The API client's redirect policy: follow at most 5 redirects, and only on the origin
/// the request started on; a redirect elsewhere is an error naming both origins (the
/// token is stripped on such redirects anyway, but the other host's answer would be used
/// as the tenant's).
pub fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.follow();
        };
        let (from, to) = (
            first.origin().ascii_serialization(),
            attempt.url().origin().ascii_serialization(),
        );
        if from != to {
            let message = format!(
                "refused a redirect from {from} to another origin, {to}: API calls stay on \
                 the tenant's origin (check base_url, or the server's configuration)"
            );
            return attempt.error(CrossOriginRedirect(message));
        }
        if attempt.previous().len() > 5 {
            return attempt.error(CrossOriginRedirect("more than 5 redirects".into()));
        }
        attempt.follow()
    })
}

/// The error a refused redirect carries (its text reaches the caller's message).
#[derive(Debug)]
pub struct CrossOriginRedirect(String);

impl std::fmt::Display for CrossOriginRedirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CrossOriginRedirect {}
