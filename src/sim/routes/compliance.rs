//! Seed 001 extras: the legal-hold platform the guide notifies (`LEGAL_HOLD_WEBHOOK_URL`),
//! served on the tenant as `POST /api/v1/legal-hold/notifications` (so a script reaches it
//! through `ctx.api`; the gate's 429s and 5xx apply to it like to any route), and the truth
//! a test checks an export run against: `GET /_sim/truth/legal-hold` (every body received)
//! and `GET /_sim/truth/exports` (every export job with its ids and phase).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::sim::jobs::JobPhase;
use crate::sim::state::{Authed, SimState};

pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/api/v1/legal-hold/notifications", post(notify))
        .route("/_sim/truth/legal-hold", get(received))
        .route("/_sim/truth/exports", get(exports))
}

async fn notify(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut received = state.legal_hold.lock().unwrap_or_else(|p| p.into_inner());
    received.push(body);
    (
        StatusCode::ACCEPTED,
        Json(json!({ "received": received.len() })),
    )
}

async fn received(State(state): State<Arc<SimState>>) -> Json<Value> {
    let received = state.legal_hold.lock().unwrap_or_else(|p| p.into_inner());
    Json(json!({ "notifications": received.clone() }))
}

async fn exports(State(state): State<Arc<SimState>>) -> Json<Value> {
    let now = Instant::now();
    let jobs: Vec<Value> = state
        .jobs
        .all("export")
        .iter()
        .map(|job| {
            let ids = job.request["interactions"]
                .as_array()
                .or_else(|| job.request["interactionIds"].as_array())
                .cloned()
                .unwrap_or_default();
            let phase = match job.phase(now) {
                JobPhase::Pending => "PENDING",
                JobPhase::Running => "PROCESSING",
                JobPhase::Completed => "COMPLETED",
                JobPhase::Failed => "FAILED",
            };
            json!({ "jobId": job.id, "ids": ids, "format": job.request["format"], "phase": phase })
        })
        .collect();
    Json(json!({ "jobs": jobs }))
}
