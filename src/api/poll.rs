//! Polling an async job (exports, archival, media download, data extraction) until a
//! status field says done or failed, with growing intervals and a deadline (the earlier of
//! `timeout` and the deadline of the client handle, see [`Api::within`]).

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::api::client::Api;
use crate::api::durations::MAX_POLL;
use crate::api::error::ApiError;
use crate::api::json_path;
use crate::api::path::ApiPath;

/// How to poll, as scripts declare it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollSpec {
    /// Path of the status field (default `status`; e.g. `jobStatus.status`).
    #[serde(default = "default_field")]
    pub field: String,
    /// States meaning the job is finished.
    pub done: Vec<String>,
    /// States meaning the job failed.
    #[serde(default)]
    pub failed: Vec<String>,
    /// First interval between polls (default `5s`).
    #[serde(default)]
    pub every: Option<String>,
    /// Longest interval; intervals grow by half each poll up to it (default: 4 × `every`).
    #[serde(default)]
    pub max_every: Option<String>,
    /// Give up after this long (default `10m`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Path of the failure reason (default: first of `failureReason`, `errorMessage`,
    /// `result.errorMessage`, `message`).
    #[serde(default)]
    pub reason: Option<String>,
    /// Query parameters for each poll.
    #[serde(default)]
    pub query: Option<Value>,
}

fn default_field() -> String {
    "status".into()
}

/// Polls `path` until done (returns the last response), failed or out of time.
pub async fn poll(api: &Api, path: impl Into<ApiPath>, spec: &PollSpec) -> Result<Value, ApiError> {
    let path = path.into();
    let usage = |message: String| ApiError::Usage {
        tenant: api.tenant().to_string(),
        what: format!("polling {path}"),
        message,
    };
    let duration = |text: &Option<String>, default: Duration| match text {
        None => Ok(default),
        Some(t) => match humantime::parse_duration(t) {
            Err(e) => Err(usage(format!("bad duration {t:?}: {e}"))),
            Ok(d) if d > MAX_POLL => Err(usage(format!(
                "duration {t:?} is longer than the {}-day limit",
                MAX_POLL.as_secs() / 86_400
            ))),
            Ok(d) => Ok(d),
        },
    };
    if spec.done.is_empty() {
        return Err(usage("`done` lists no states".into()));
    }
    let mut every = duration(&spec.every, Duration::from_secs(5))?;
    let max_every = duration(&spec.max_every, every.saturating_mul(4).min(MAX_POLL))?.max(every);
    let timeout = duration(&spec.timeout, Duration::from_secs(600))?;
    let clock = api.clock();
    let started = clock.now();
    let mut deadline = started + timeout;
    if let Some(item_deadline) = api.deadline() {
        let left = item_deadline.saturating_duration_since(std::time::Instant::now());
        deadline = deadline.min(clock.now() + left);
    }
    loop {
        let response = api
            .request(Method::GET, &path, spec.query.as_ref(), None)
            .await?;
        let state = json_path::text(json_path::get(&response, &spec.field)).unwrap_or_default();
        if spec.done.iter().any(|s| s.eq_ignore_ascii_case(&state)) {
            return Ok(response);
        }
        if spec.failed.iter().any(|s| s.eq_ignore_ascii_case(&state)) {
            return Err(ApiError::JobFailed {
                tenant: api.tenant().to_string(),
                path: path.to_string(),
                field: spec.field.clone(),
                state,
                message: failure_reason(&response, spec.reason.as_deref()),
            });
        }
        let now = clock.now();
        if now + every > deadline {
            return Err(ApiError::PollTimeout {
                tenant: api.tenant().to_string(),
                path: path.to_string(),
                state: if state.is_empty() {
                    "without a status".into()
                } else {
                    state
                },
                waited: now - started,
            });
        }
        tracing::debug!(tenant = api.tenant(), %path, state = %state, wait_ms = every.as_millis() as u64, "job not done yet");
        clock.sleep_until(now + every).await;
        every = every.saturating_add(every / 2).min(max_every);
    }
}

fn failure_reason(response: &Value, path: Option<&str>) -> String {
    let candidates = match path {
        Some(p) => vec![p],
        None => vec![
            "failureReason",
            "errorMessage",
            "result.errorMessage",
            "jobStatus.result.errorMessage",
            "message",
        ],
    };
    candidates
        .iter()
        .find_map(|p| json_path::text(json_path::get(response, p)))
        .unwrap_or_else(|| "no reason given".into())
}
