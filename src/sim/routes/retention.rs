//! Seed 000 (retention lifecycle): `GET /api/v2/recordings` (offset/limit),
//! `GET /api/v2/recordings/policies`, `PUT /api/v2/recordings/{id}/retention` (409 when the
//! recording is under legal hold), archival jobs that progress PENDING → COMPLETED/FAILED.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::sim::api_error::ApiError;
use crate::sim::dataset::{Status, rfc3339_ms};
use crate::sim::jobs::JobPhase;
use crate::sim::routes::recording::find;
use crate::sim::state::{Authed, RetentionCalls, SimState};

pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/api/v2/recordings", get(list))
        .route("/api/v2/recordings/policies", get(policies))
        .route("/api/v2/recordings/{id}/retention", put(set_retention))
        .route("/api/v2/archival/jobs", post(create_job))
        .route("/api/v2/archival/jobs/{id}", get(job_status))
}

pub(super) fn seed000_status(status: Status) -> &'static str {
    match status {
        Status::Available => "completed",
        Status::Processing => "processing",
        Status::Archived => "archived",
        Status::Expired => "expired",
    }
}

async fn list(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let number = |name: &str, default: usize| -> Result<usize, ApiError> {
        params.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| ApiError::bad_request(format!("{name} must be an integer")))
        })
    };
    let (offset, limit) = (number("offset", 0)?, number("limit", 100)?);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::bad_request("limit must be within 1..=1000"));
    }
    let wanted = params.get("status").map(|s| s.to_lowercase());
    let elapsed = state.elapsed();
    let ds = &state.dataset;
    let matching: Vec<usize> = (0..ds.len())
        .filter(|&i| {
            wanted
                .as_deref()
                .is_none_or(|w| seed000_status(ds.status_of(i, elapsed)) == w)
        })
        .collect();
    let retention = state
        .retention
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let items: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|&i| {
            let rec = ds.recording(i);
            json!({
                "id": rec.id,
                "startTimestamp": rec.created_rfc3339(),
                "endTimestamp": rfc3339_ms(rec.ended_ms()),
                "duration": rec.duration_secs,
                "fileSize": rec.size_bytes(),
                "channelType": rec.channel_type,
                "agentId": rec.agent_id.to_string(),
                "currentRetentionDays": retention.get(&i).copied().unwrap_or_else(|| ds.retention_days(i)),
                "status": seed000_status(rec.status(elapsed)),
            })
        })
        .collect();
    Ok(Json(
        json!({ "items": items, "total": matching.len(), "offset": offset, "limit": limit }),
    ))
}

/// The policies of a dataset: the seed's frameworks first (the fourth breaks the PCI DSS
/// minimum on purpose, so validation has something to catch), then variations.
pub fn policy_list(count: usize) -> Vec<Value> {
    const BASE: [(&str, &str, u32); 4] = [
        ("PCI_DSS", "PCI card-holder calls", 365),
        ("HIPAA", "Health records", 2190),
        ("GDPR", "EU customers", 90),
        ("PCI_DSS", "Short PCI (misconfigured)", 180),
    ];
    (0..count)
        .map(|i| {
            let (framework, name, days) = BASE[i % BASE.len()];
            let days = days + (i / BASE.len()) as u32 * 30;
            json!({
                "id": format!("pol-{:03}", i + 1),
                "name": name,
                "retentionDays": days,
                "regulatoryFramework": framework,
                "archivalDestination": format!("arn:aws:s3:::cxone-archive-{}", framework.to_lowercase()),
            })
        })
        .collect()
}

async fn policies(_: Authed, State(state): State<Arc<SimState>>) -> Json<Value> {
    Json(Value::Array(policy_list(state.dataset.config().policies)))
}

async fn set_retention(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let rec = find(&state, &id)?;
    let index = state.dataset.index_of(&id).unwrap_or_default();
    let days = body["retentionDays"]
        .as_u64()
        .filter(|d| (1..=3650).contains(d));
    let Some(days) = days else {
        return Err(ApiError::bad_request(
            "retentionDays must be an integer within 1..=3650",
        ));
    };
    let count = |f: fn(&mut RetentionCalls)| {
        let mut calls = state
            .retention_calls
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(calls.entry(index).or_default());
    };
    if state.dataset.locked(index) {
        count(|c| c.refused += 1);
        return Err(ApiError::Conflict(format!(
            "recording {} is under legal hold; retention is locked",
            rec.id
        )));
    }
    state
        .retention
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(index, days as u32);
    count(|c| c.applied += 1);
    Ok(Json(json!({
        "recordingId": rec.id,
        "retentionDays": days,
        "archivalDestination": body["archivalDestination"],
        "lifecycleTags": body["lifecycleTags"],
        "status": "APPLIED",
        "updatedAt": rfc3339_ms(chrono::Utc::now().timestamp_millis()),
    })))
}

async fn create_job(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let id = body["recordingId"]
        .as_str()
        .ok_or_else(|| ApiError::bad_request("recordingId is required"))?;
    let rec = find(&state, id)?;
    if body["destination"].as_str().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request("destination is required"));
    }
    let faults = state.faults();
    let gone = matches!(
        rec.status(state.elapsed()),
        Status::Archived | Status::Expired
    );
    let fails = gone || state.roll(faults.job_failure_rate);
    let job = state.jobs.create(
        "archival",
        "arch-",
        body.clone(),
        faults.job_duration,
        fails,
    );
    if let Some(url) = body["webhookUrl"].as_str().filter(|u| !u.is_empty()) {
        crate::sim::webhooks::notify_when_done(&state, job.clone(), url.to_string(), archival_json);
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "jobId": job.id, "status": "PENDING", "recordingId": rec.id })),
    )
        .into_response())
}

/// The seed-000 spelling of a job phase.
pub(super) fn phase_text(phase: JobPhase) -> &'static str {
    match phase {
        JobPhase::Pending => "PENDING",
        JobPhase::Running => "IN_PROGRESS",
        JobPhase::Completed => "COMPLETED",
        JobPhase::Failed => "FAILED",
    }
}

fn archival_json(state: &SimState, job: &crate::sim::jobs::Job) -> Value {
    let phase = job.phase(Instant::now());
    let recording_id = job.request["recordingId"].as_str().unwrap_or_default();
    let mut body = json!({
        "jobId": job.id,
        "recordingId": recording_id,
        "destination": job.request["destination"],
        "status": phase_text(phase),
        "createdAt": rfc3339_ms(job.created_unix_ms),
        "timestamp": rfc3339_ms(chrono::Utc::now().timestamp_millis()),
    });
    match phase {
        JobPhase::Completed => {
            body["completedAt"] = json!(rfc3339_ms(job.finished_unix_ms()));
            let size = state
                .dataset
                .index_of(recording_id)
                .map(|i| state.dataset.combined_size(i))
                .unwrap_or(0);
            body["archivedSizeBytes"] = json!(size);
        }
        JobPhase::Failed => {
            body["completedAt"] = json!(rfc3339_ms(job.finished_unix_ms()));
            body["failureReason"] =
                json!("destination write failed: access denied by bucket policy");
        }
        _ => {}
    }
    body
}

async fn job_status(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = state
        .jobs
        .get("archival", &id)
        .ok_or_else(|| ApiError::not_found(format!("archival job {id} not found")))?;
    Ok(Json(archival_json(&state, &job)))
}
