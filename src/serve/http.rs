//! The HTTP face of `cxpipe serve`: health, status (JSON and HTML), metrics, webhooks and
//! run-now. Routes only verify, record and answer; everything else goes through the
//! [`ServeHost`] the daemon implements.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::metrics::Metrics;
use super::page;
use super::status::StatusSnapshot;
use super::webhook::{Rejection, VerifiedEvent, Verifier};
use crate::ledger::{Ledger, now_ms};
use crate::secret::Secret;

/// The Prometheus text exposition content type `/metrics` answers with.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why a run could not be started on request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    #[error("no pipeline {pipeline} for tenant {tenant} is configured")]
    Unknown { pipeline: String, tenant: String },
    #[error("a run of {pipeline} for tenant {tenant} is already in progress")]
    Busy { pipeline: String, tenant: String },
    /// Configured, but it cannot run now: disabled, or no version of its script compiles,
    /// or its run could not be assembled.
    #[error("{pipeline} for tenant {tenant} cannot run: {reason}")]
    NotRunnable {
        pipeline: String,
        tenant: String,
        reason: String,
    },
}

/// An event could not be handed to its pipeline; it stays unhanded in the ledger and is
/// handed again by the next start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("handing webhook event {event_id} to {pipeline} of tenant {tenant}: {reason}")]
pub struct HandError {
    pub tenant: String,
    pub pipeline: String,
    pub event_id: String,
    pub reason: String,
}

/// What the routes need from the daemon.
pub trait ServeHost: Send + Sync + 'static {
    /// The current status of every pipeline × tenant.
    fn status(&self) -> BoxFuture<'_, StatusSnapshot>;
    /// The node's metrics, where the routes count webhook outcomes.
    fn metrics(&self) -> &Metrics;
    /// The metrics text, gauges refreshed from the ledger first.
    fn metrics_text(&self) -> BoxFuture<'_, String>;
    /// The verifier of tenant × pipeline, when that pipeline takes webhooks.
    fn verifier(&self, tenant: &str, pipeline: &str) -> Option<Arc<Verifier>>;
    /// Where accepted events are recorded before they are acknowledged.
    fn ledger(&self) -> &Ledger;
    /// Gives a recorded event to the pipeline's `on_event`; resolves once what it emitted
    /// is admitted. Called after the sender was acknowledged.
    fn hand_event(
        &self,
        tenant: &str,
        pipeline: &str,
        event: VerifiedEvent,
    ) -> BoxFuture<'static, Result<(), HandError>>;
    /// Starts a run of pipeline × tenant now.
    fn trigger_run(&self, pipeline: &str, tenant: &str) -> Result<(), TriggerError>;
    /// The bearer token `POST /pipelines/{name}/run` requires; `None` refuses every call.
    fn bearer_token(&self) -> Option<Secret>;
}

type Host = Arc<dyn ServeHost>;

/// Every route, on `host`.
pub fn router(host: Host) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/", get(status_page))
        .route("/hooks/{tenant}/{pipeline}", post(hook))
        .route("/pipelines/{name}/run", post(run_now))
        .with_state(host)
}

async fn status(State(host): State<Host>) -> axum::Json<StatusSnapshot> {
    axum::Json(host.status().await)
}

async fn status_page(State(host): State<Host>) -> Html<String> {
    Html(page::render(&host.status().await))
}

async fn metrics(State(host): State<Host>) -> Response {
    let text = host.metrics_text().await;
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response()
}

fn rejection_status(r: Rejection) -> StatusCode {
    match r {
        Rejection::Unsigned | Rejection::BadSignature | Rejection::Stale => {
            StatusCode::UNAUTHORIZED
        }
        Rejection::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Rejection::Malformed => StatusCode::BAD_REQUEST,
        // The sender must stop retrying an event already received.
        Rejection::Replayed => StatusCode::OK,
    }
}

/// The most a refused sender may still write after its 413 before the connection is cut.
const LINGER_BYTES: usize = 8 * 1024 * 1024;
/// How long a refused sender is given to finish writing.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads at most `cap` bytes of `body`; more is `TooLarge`, a broken stream `Malformed`.
///
/// A body refused as too large is read on and discarded (at most [`LINGER_BYTES`], for at
/// most [`LINGER_TIME`]) before the answer, as a lingering close does: a server that closes
/// a socket with unread bytes resets it, and the sender then sees the reset, not the 413.
async fn read_capped(headers: &HeaderMap, body: Body, cap: usize) -> Result<Vec<u8>, Rejection> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|n| n > cap as u64) {
        if declared.is_some_and(|n| n <= LINGER_BYTES as u64) {
            linger(&mut stream).await;
        }
        return Err(Rejection::TooLarge);
    }
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Rejection::Malformed)?;
        if out.len() + chunk.len() > cap {
            linger(&mut stream).await;
            return Err(Rejection::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Discards what is left of a refused body, within the linger bounds.
async fn linger(stream: &mut axum::body::BodyDataStream) {
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > LINGER_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// A refusal of a body that may be partly unread closes the connection, so the sender
/// does not send its next request on a socket the server is about to drop.
async fn hook(
    state: State<Host>,
    path: Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match receive(state, path, headers, body).await {
        StatusCode::PAYLOAD_TOO_LARGE => (
            StatusCode::PAYLOAD_TOO_LARGE,
            [(header::CONNECTION, "close")],
        )
            .into_response(),
        status => status.into_response(),
    }
}

async fn receive(
    State(host): State<Host>,
    Path((tenant, pipeline)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> StatusCode {
    // Unknown paths are not counted: their labels would come from the sender.
    let Some(verifier) = host.verifier(&tenant, &pipeline) else {
        tracing::debug!(tenant, pipeline, "webhook for no configured pipeline");
        return StatusCode::NOT_FOUND;
    };
    let verified = match read_capped(&headers, body, verifier.max_body()).await {
        Ok(bytes) => verifier.verify(&headers, &bytes, now_ms()),
        Err(r) => Err(r),
    };
    let event = match verified {
        Ok(event) => event,
        Err(r) => {
            tracing::info!(tenant, pipeline, outcome = r.as_str(), "webhook refused");
            host.metrics().webhook(&tenant, &pipeline, r.as_str());
            return rejection_status(r);
        }
    };
    let ledger = host.ledger();
    match ledger
        .record_event_once(&tenant, &pipeline, &event.event_id, &event.body)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            let r = Rejection::Replayed;
            tracing::info!(tenant, pipeline, event_id = %event.event_id, "webhook replayed");
            host.metrics().webhook(&tenant, &pipeline, r.as_str());
            return rejection_status(r);
        }
        Err(err) => {
            tracing::error!(tenant, pipeline, error = %err, "webhook event not recorded");
            host.metrics().webhook(&tenant, &pipeline, "not_recorded");
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    host.metrics().webhook(&tenant, &pipeline, "accepted");
    let event_id = event.event_id.clone();
    let handing = host.hand_event(&tenant, &pipeline, event);
    let host = host.clone();
    tokio::spawn(async move {
        match handing.await {
            Ok(()) => {
                if let Err(err) = host
                    .ledger()
                    .mark_event_handed(&tenant, &pipeline, &event_id)
                    .await
                {
                    tracing::warn!(tenant, pipeline, event_id, error = %err,
                        "webhook event handed but not marked; it is handed again at the next start");
                }
            }
            Err(err) => tracing::warn!(error = %err, "webhook event stays unhanded"),
        }
    });
    StatusCode::ACCEPTED
}

#[derive(Deserialize)]
struct RunQuery {
    tenant: Option<String>,
}

/// Compares two secrets in time independent of where they differ (and of their lengths:
/// the digests are compared).
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn authorized(headers: &HeaderMap, token: Option<Secret>) -> bool {
    let Some(token) = token else {
        return false;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    given.is_some_and(|g| same_secret(g.as_bytes(), token.expose().as_bytes()))
}

async fn run_now(
    State(host): State<Host>,
    Path(name): Path<String>,
    Query(query): Query<RunQuery>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers, host.bearer_token()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
        )
            .into_response();
    }
    let Some(tenant) = query.tenant else {
        return (
            StatusCode::BAD_REQUEST,
            "name the tenant: POST /pipelines/NAME/run?tenant=TENANT\n",
        )
            .into_response();
    };
    let answer = |status: StatusCode, text: &str| {
        let body = serde_json::json!({ "pipeline": name, "tenant": tenant, "status": text });
        (status, axum::Json(body)).into_response()
    };
    match host.trigger_run(&name, &tenant) {
        Ok(()) => {
            tracing::info!(pipeline = name, tenant, "run requested over HTTP");
            answer(StatusCode::ACCEPTED, "started")
        }
        Err(TriggerError::Unknown { .. }) => answer(StatusCode::NOT_FOUND, "unknown"),
        Err(TriggerError::Busy { .. }) => answer(StatusCode::CONFLICT, "busy"),
        Err(TriggerError::NotRunnable { reason, .. }) => {
            let body = serde_json::json!({
                "pipeline": name, "tenant": tenant, "status": "not_runnable", "reason": reason,
            });
            (StatusCode::CONFLICT, axum::Json(body)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(same_secret(b"token-1", b"token-1"));
        assert!(!same_secret(b"token-1", b"token-2"));
        assert!(!same_secret(b"token", b"token-1"));
        assert!(!same_secret(b"", b"token-1"));
    }
}
