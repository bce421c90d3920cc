//! Real dialect, bulk side: media-download requests (`POST /media-download/v1/contacts`,
//! `GET …/status/{requestId}`, a file manifest at `downloadLocation`) and data-extraction
//! jobs (one active per tenant, minimum interval, CSV result behind a 30-second URL).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::sim::api_error::ApiError;
use crate::sim::dataset::{Status, parse_time_ms, rfc3339_ms};
use crate::sim::interactions::{count, interaction, key, parse_contact_id};
use crate::sim::jobs::{Job, JobPhase};
use crate::sim::media::Channel;
use crate::sim::presign::UrlRefusal;
use crate::sim::rng::{below, derive};
use crate::sim::routes::recording::presigned_url;
use crate::sim::state::{Authed, SimState};

const MAX_ENTITIES: usize = 100;
const EXTRACTION_ENTITY: &str = "recording-interaction-metadata";

pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/media-download/v1/contacts", post(create_download))
        .route("/media-download/v1/segments", post(create_download))
        .route("/media-download/v1/status/{id}", get(download_status))
        .route("/media-download/v1/files/{id}", get(download_files))
        .route("/data-extraction/v1/jobs", post(create_extraction))
        .route("/data-extraction/v1/jobs/{id}", get(extraction_status))
        .route("/data-extraction/v1/results/{id}", get(extraction_result))
}

fn phase_name(phase: JobPhase) -> &'static str {
    match phase {
        JobPhase::Pending => "PENDING",
        JobPhase::Running => "IN_PROGRESS",
        JobPhase::Completed => "COMPLETED",
        JobPhase::Failed => "FAILED",
    }
}

async fn create_download(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let ids = body["entityIds"]
        .as_array()
        .filter(|a| !a.is_empty() && a.len() <= MAX_ENTITIES);
    let ids = ids.ok_or_else(|| {
        ApiError::bad_request(format!("entityIds must list 1..={MAX_ENTITIES} ids"))
    })?;
    let ids: Vec<Value> = ids
        .iter()
        .map(|v| {
            json!(
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            )
        })
        .collect();
    let faults = state.faults();
    let fails = state.roll(faults.job_failure_rate);
    let job = state.jobs.create(
        "media-download",
        "md-",
        json!({ "entityIds": ids }),
        faults.job_duration,
        fails,
    );
    Ok((StatusCode::ACCEPTED, Json(json!({ "requestId": job.id }))).into_response())
}

/// Per entity: Ok(recording index) or Err(failure reason).
fn entity_outcome(state: &SimState, id: &str) -> Result<usize, String> {
    let index =
        parse_contact_id(&state.dataset, id).ok_or_else(|| format!("contact {id} not found"))?;
    let recording = interaction(&state.dataset, index)
        .recording
        .ok_or_else(|| "contact has no voice recording".to_string())?;
    match state.dataset.status_of(recording, state.elapsed()) {
        Status::Available => Ok(recording),
        other => Err(format!("recording is {}", other.as_str())),
    }
}

fn download_job(state: &SimState, id: &str) -> Result<Arc<Job>, ApiError> {
    state
        .jobs
        .get("media-download", id)
        .ok_or_else(|| ApiError::not_found(format!("request {id} not found")))
}

async fn download_status(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = download_job(&state, &id)?;
    let phase = job.phase(Instant::now());
    let ids: Vec<String> = job.request["entityIds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let entities: Vec<Value> = ids
        .iter()
        .map(|e| match (phase, entity_outcome(&state, e)) {
            (JobPhase::Completed, Ok(_)) => json!({ "entityId": e, "status": "COMPLETED", "failureReason": Value::Null }),
            (JobPhase::Completed | JobPhase::Failed, Err(reason)) => json!({ "entityId": e, "status": "FAILED", "failureReason": reason }),
            (JobPhase::Failed, Ok(_)) => json!({ "entityId": e, "status": "FAILED", "failureReason": "bulk download worker failed" }),
            _ => json!({ "entityId": e, "status": phase_name(phase), "failureReason": Value::Null }),
        })
        .collect();
    let location = (phase == JobPhase::Completed)
        .then(|| format!("{}/media-download/v1/files/{}", state.base_url(), job.id));
    Ok(Json(
        json!({ "requestId": job.id, "status": phase_name(phase), "entities": entities, "downloadLocation": location }),
    ))
}

async fn download_files(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = download_job(&state, &id)?;
    if job.phase(Instant::now()) != JobPhase::Completed {
        return Err(ApiError::not_found(format!(
            "request {id} has no files (not completed)"
        )));
    }
    let files: Vec<Value> = job.request["entityIds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|e| entity_outcome(&state, e).ok().map(|r| (e, r)))
        .map(|(e, r)| {
            let rec = state.dataset.recording(r);
            let (url, _) = presigned_url(&state, &rec, Channel::Combined);
            json!({ "entityId": e, "recordingId": rec.id, "fileName": format!("{e}.{}", rec.format.extension()), "url": url, "sizeBytes": rec.size_bytes() })
        })
        .collect();
    Ok(Json(json!({ "requestId": id, "files": files })))
}

async fn create_extraction(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    if body["entityName"] != EXTRACTION_ENTITY {
        return Err(ApiError::bad_request(format!(
            "entityName must be {EXTRACTION_ENTITY}"
        )));
    }
    let (start, end) = (
        body["startDate"].as_str().and_then(parse_time_ms),
        body["endDate"].as_str().and_then(parse_time_ms),
    );
    if !matches!((start, end), (Some(s), Some(e)) if s < e) {
        return Err(ApiError::bad_request(
            "startDate and endDate must be ISO 8601 times with startDate < endDate",
        ));
    }
    let now = Instant::now();
    if state.jobs.active("extraction", now) > 0 {
        return Err(ApiError::Conflict(
            "another data-extraction job is active for this tenant".into(),
        ));
    }
    let faults = state.faults();
    {
        let mut last = state
            .last_extraction
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(wait) = last
            .map(|at| (at + faults.extraction_interval).saturating_duration_since(now))
            .filter(|w| !w.is_zero())
        {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let body = json!({ "message": "data-extraction jobs are limited to one per 30 seconds", "route": "/data-extraction/v1/jobs" });
            return Ok((
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, secs.to_string())],
                Json(body),
            )
                .into_response());
        }
        *last = Some(now);
    }
    let fails = state.roll(faults.job_failure_rate);
    let job = state
        .jobs
        .create("extraction", "dx-", body, faults.job_duration, fails);
    Ok((StatusCode::ACCEPTED, Json(json!({ "jobId": job.id }))).into_response())
}

async fn extraction_status(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = state
        .jobs
        .get("extraction", &id)
        .ok_or_else(|| ApiError::not_found(format!("job {id} not found")))?;
    let phase = job.phase(Instant::now());
    let status = match phase {
        JobPhase::Pending | JobPhase::Running => "RUNNING",
        JobPhase::Completed => "SUCCEEDED",
        JobPhase::Failed => "FAILED",
    };
    let result = match phase {
        JobPhase::Completed => {
            let ttl = state.faults().extraction_url_ttl;
            let expires = (SystemTime::now() + ttl)
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs_f64()
                .ceil() as u64;
            let path = format!("/data-extraction/v1/results/{}", job.id);
            let query = state
                .signer
                .query(&path, expires, &state.credentials.access_key_id);
            json!({ "url": format!("{}{path}?{query}", state.base_url()), "errorMessage": Value::Null })
        }
        JobPhase::Failed => {
            json!({ "url": Value::Null, "errorMessage": "extraction failed; submit a new job" })
        }
        _ => json!({ "url": Value::Null, "errorMessage": Value::Null }),
    };
    Ok(Json(
        json!({ "jobStatus": { "id": job.id, "status": status, "result": result } }),
    ))
}

async fn extraction_result(
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
    Query(params): Query<std::collections::HashMap<String, String>>,
    uri: Uri,
) -> Response {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let expires = params.get("Expires").and_then(|v| v.parse().ok());
    if let Err(refusal) = state.signer.check(
        uri.path(),
        expires,
        params.get("Signature").map(String::as_str),
        now,
    ) {
        crate::sim::stats::bump(&state.stats.urls_refused);
        let message = if refusal == UrlRefusal::Expired {
            "Request has expired"
        } else {
            "signature does not match"
        };
        return crate::sim::routes::storage::xml_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            message,
        );
    }
    let Some(job) = state.jobs.get("extraction", &id) else {
        return ApiError::not_found(format!("job {id} not found")).into_response();
    };
    let (start, end) = (
        job.request["startDate"]
            .as_str()
            .and_then(parse_time_ms)
            .unwrap_or(i64::MIN),
        job.request["endDate"]
            .as_str()
            .and_then(parse_time_ms)
            .unwrap_or(i64::MAX),
    );
    let mut csv = String::from(
        "acdContactId,masterContactId,segmentId,recordingId,agentId,startDate,endDate,durationSeconds,mediaType\n",
    );
    let ds = &state.dataset;
    for i in 0..count(ds).min(ds.len()) {
        let k = key(ds, i);
        if !k.closed || k.created_ms < start || k.created_ms >= end {
            continue;
        }
        let ix = interaction(ds, i);
        let rec = ds.recording(i);
        // Rows repeat per segment: consumers must dedupe by ACD contact id.
        for segment in 0..=below(derive(ds.seed(), i as u64, 77), 2) {
            csv.push_str(&format!(
                "{},{},{}-{segment},{},{},{},{},{},voice\n",
                ix.contact_id,
                ix.contact_id,
                ix.contact_id,
                rec.id,
                ix.agent_id,
                rfc3339_ms(ix.created_ms),
                rfc3339_ms(ix.ended_ms),
                rec.duration_secs
            ));
        }
    }
    ([(header::CONTENT_TYPE, "text/csv")], csv).into_response()
}
