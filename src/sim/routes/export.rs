//! Seed 001 (compliance retrieval): `POST /api/v1/recordings/export` (validated payload,
//! 202 + job id) and `GET /api/v1/recordings/export/{id}/status` (PENDING → PROCESSING →
//! COMPLETED with presigned `downloadUrl` and SHA-256 `checksum`, or FAILED).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::sim::api_error::ApiError;
use crate::sim::dataset::{Status, parse_time_ms, rfc3339_ms};
use crate::sim::interactions::parse_id;
use crate::sim::jobs::{Job, JobPhase};
use crate::sim::media::Channel;
use crate::sim::routes::recording::presigned_url;
use crate::sim::state::{Authed, SimState};

const FORMATS: [&str; 3] = ["wav", "mp3", "ogg"];
const JURISDICTIONS: [&str; 4] = ["US-CA", "US-VA", "EU-DE", "GB-EN"];
const MAX_INTERACTIONS: usize = 100;

pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/api/v1/recordings/export", post(create))
        .route("/api/v1/recordings/export/{id}/status", get(status))
}

/// Recording index of an export entry: a recording id, or an interaction id with a recording.
fn recording_of(state: &SimState, id: &str) -> Option<usize> {
    state
        .dataset
        .index_of(id)
        .or_else(|| parse_id(&state.dataset, id).filter(|&i| i < state.dataset.len()))
}

async fn create(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let ids: Vec<&str> = body["interactions"]
        .as_array()
        .or_else(|| body["interactionIds"].as_array())
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if ids.is_empty() || ids.len() > MAX_INTERACTIONS {
        return Err(ApiError::bad_request(format!(
            "interactions must list 1..={MAX_INTERACTIONS} ids"
        )));
    }
    let format = body["format"].as_str().unwrap_or_default();
    if !FORMATS.contains(&format) {
        return Err(ApiError::bad_request(format!(
            "format must be one of {}",
            FORMATS.join(", ")
        )));
    }
    let jurisdiction = body["jurisdiction"].as_str().unwrap_or_default();
    if !JURISDICTIONS.contains(&jurisdiction) {
        return Err(ApiError::Other(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("jurisdiction {jurisdiction:?} is outside the authorised scope"),
        ));
    }
    let start = body["dateRange"]["start"].as_str().and_then(parse_time_ms);
    let end = body["dateRange"]["end"].as_str().and_then(parse_time_ms);
    if !matches!((start, end), (Some(s), Some(e)) if s <= e) {
        return Err(ApiError::bad_request(
            "dateRange needs start <= end as ISO 8601 times",
        ));
    }
    if let Some(unknown) = ids.iter().find(|id| recording_of(&state, id).is_none()) {
        return Err(ApiError::not_found(format!(
            "interaction {unknown} has no recording"
        )));
    }
    let faults = state.faults();
    let fails = format == "ogg" || state.roll(faults.job_failure_rate);
    let job = state
        .jobs
        .create("export", "exp-", body.clone(), faults.job_duration, fails);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": job.id, "jobId": job.id, "state": "PENDING" })),
    )
        .into_response())
}

async fn status(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = state
        .jobs
        .get("export", &id)
        .ok_or_else(|| ApiError::not_found(format!("export job {id} not found")))?;
    let worker = state.clone();
    let body = tokio::task::spawn_blocking(move || export_json(&worker, &job))
        .await
        .map_err(|err| {
            ApiError::Other(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal",
                err.to_string(),
            )
        })?;
    Ok(Json(body))
}

fn export_json(state: &SimState, job: &Job) -> Value {
    let phase = job.phase(Instant::now());
    let mut body = json!({
        "jobId": job.id,
        "state": match phase { JobPhase::Pending => "PENDING", JobPhase::Running => "PROCESSING", JobPhase::Completed => "COMPLETED", JobPhase::Failed => "FAILED" },
        "createdAt": rfc3339_ms(job.created_unix_ms),
    });
    match phase {
        JobPhase::Failed => {
            let reason = if job.request["format"] == "ogg" {
                "ogg transcoding is not available for this tenant"
            } else {
                "export worker failed; resubmit the job"
            };
            body["errorMessage"] = json!(reason);
        }
        JobPhase::Completed => {
            let elapsed = state.elapsed();
            let mut files = Vec::new();
            let ids = job.request["interactions"]
                .as_array()
                .or_else(|| job.request["interactionIds"].as_array())
                .cloned()
                .unwrap_or_default();
            for id in ids.iter().filter_map(Value::as_str) {
                let Some(index) = recording_of(state, id) else {
                    continue;
                };
                let rec = state.dataset.recording(index);
                if rec.status(elapsed) != Status::Available {
                    body["state"] = json!("FAILED");
                    body["errorMessage"] = json!(format!(
                        "recording {} is not available ({})",
                        rec.id,
                        rec.status(elapsed).as_str()
                    ));
                    return body;
                }
                let spec = rec.media(Channel::Combined);
                let digests = state.digests.get(index, Channel::Combined, &spec);
                let (url, _) = presigned_url(state, &rec, Channel::Combined);
                files.push(json!({
                    "interactionId": id, "recordingId": rec.id, "downloadUrl": url,
                    "checksum": digests.sha256, "sizeBytes": spec.total(), "format": rec.format.extension(),
                }));
            }
            if let Some(first) = files.first() {
                for key in ["downloadUrl", "checksum", "sizeBytes", "format"] {
                    body[key] = first[key].clone();
                }
            }
            body["checksumAlgorithm"] = json!("SHA-256");
            body["completedAt"] = json!(rfc3339_ms(job.finished_unix_ms()));
            body["files"] = Value::Array(files);
        }
        _ => {}
    }
    body
}
