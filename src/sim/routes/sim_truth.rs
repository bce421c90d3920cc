//! Ground truth for tests: `GET /_sim/truth/recordings` (status now, sizes, SHA-256/MD5 per
//! channel), `/_sim/truth/transcripts` (every segment and whether it is published, late or
//! missing), `/_sim/truth/interactions` (status, custom fields) and `/_sim/truth/retention`
//! (legal hold, duplicate of, retention PUTs and archival jobs per recording), each
//! `?offset&limit`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::sim::api_error::ApiError;
use crate::sim::dataset::Status;
use crate::sim::interactions::{count, interaction};
use crate::sim::routes::interactions::ARCHIVAL_FIELD_ID;
use crate::sim::routes::retention::{phase_text, seed000_status};
use crate::sim::state::SimState;
use crate::sim::transcripts::{Publication, publication, segment_count, segment_id};

const MAX_TRUTH_PAGE: usize = 1000;

pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/_sim/truth/recordings", get(truth_recordings))
        .route("/_sim/truth/transcripts", get(truth_transcripts))
        .route("/_sim/truth/interactions", get(truth_interactions))
        .route("/_sim/truth/retention", get(truth_retention))
}

fn window(params: &HashMap<String, String>) -> Result<(usize, usize), ApiError> {
    let parse = |name: &str, default: usize| -> Result<usize, ApiError> {
        params.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| ApiError::bad_request(format!("{name} must be an integer")))
        })
    };
    Ok((
        parse("offset", 0)?,
        parse("limit", 100)?.min(MAX_TRUTH_PAGE),
    ))
}

/// Runs `row` for each index of the window on a blocking thread.
async fn rows(
    state: Arc<SimState>,
    total: usize,
    params: HashMap<String, String>,
    key: &'static str,
    row: fn(&SimState, usize, Duration) -> Value,
) -> Result<Json<Value>, ApiError> {
    let (offset, limit) = window(&params)?;
    let items = tokio::task::spawn_blocking(move || {
        let elapsed = state.elapsed();
        (offset..(offset + limit).min(total))
            .map(|i| row(&state, i, elapsed))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|err| {
        ApiError::Other(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            err.to_string(),
        )
    })?;
    Ok(Json(
        json!({ "total": total, "offset": offset, "limit": limit, key: items }),
    ))
}

async fn truth_recordings(
    State(state): State<Arc<SimState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let total = state.dataset.len();
    rows(state, total, params, "recordings", truth_of).await
}

async fn truth_transcripts(
    State(state): State<Arc<SimState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let total = state.dataset.len();
    rows(state, total, params, "recordings", transcripts_of).await
}

async fn truth_interactions(
    State(state): State<Arc<SimState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let total = count(&state.dataset);
    rows(state, total, params, "interactions", interaction_of).await
}

async fn truth_retention(
    State(state): State<Arc<SimState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let total = state.dataset.len();
    rows(state, total, params, "recordings", retention_of).await
}

/// Recording `index` as seed 000 sees it: listing status, legal hold, the recording it
/// duplicates, retention before and now, the retention PUTs it received and its archival
/// jobs (oldest first) with their status now.
fn retention_of(state: &SimState, index: usize, elapsed: Duration) -> Value {
    let ds = &state.dataset;
    let rec = ds.recording(index);
    let origin = ds.origin(index);
    let current = state
        .retention
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&index)
        .copied();
    let calls = state
        .retention_calls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&index)
        .copied()
        .unwrap_or_default();
    let now = std::time::Instant::now();
    let jobs: Vec<Value> = state
        .jobs
        .all("archival")
        .iter()
        .filter(|job| job.request["recordingId"].as_str() == Some(rec.id.as_str()))
        .map(|job| json!({ "jobId": job.id, "status": phase_text(job.phase(now)) }))
        .collect();
    json!({
        "index": index,
        "id": rec.id,
        "status": seed000_status(rec.status(elapsed)),
        "duration": rec.duration_secs,
        "fileSize": rec.size_bytes(),
        "legalHold": ds.locked(index),
        "duplicateOf": (origin != index).then(|| ds.recording(origin).id),
        "initialRetentionDays": ds.retention_days(index),
        "retentionDays": current.unwrap_or_else(|| ds.retention_days(index)),
        "retentionApplied": calls.applied,
        "retentionRefused": calls.refused,
        "archivalJobs": jobs,
    })
}

/// Segments of recording `index`: id, and `published`, `late` (with when) or `missing`.
fn transcripts_of(state: &SimState, index: usize, elapsed: Duration) -> Value {
    let ds = &state.dataset;
    let faults = state.faults();
    let segments: Vec<Value> = (0..segment_count(ds, index))
        .map(|k| {
            let (state_name, at) = match publication(ds, &faults, index, k) {
                Publication::Published => ("published", None),
                Publication::Late(at) if elapsed >= at => ("published", Some(at)),
                Publication::Late(at) => ("late", Some(at)),
                Publication::Missing => ("missing", None),
            };
            json!({ "id": segment_id(ds, index, k), "segmentIndex": k, "state": state_name, "publishedAfterMs": at.map(|d| d.as_millis() as u64) })
        })
        .collect();
    let rec = ds.recording(index);
    json!({ "index": index, "recordingId": rec.id, "callId": rec.call_id, "totalSegments": segments.len(), "segments": segments })
}

/// Interaction `index`: ids, status, kind, recording, and the stored `archival_status`.
fn interaction_of(state: &SimState, index: usize, _elapsed: Duration) -> Value {
    let ix = interaction(&state.dataset, index);
    let archival = state
        .custom_fields
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(index, ARCHIVAL_FIELD_ID.to_string()))
        .cloned();
    json!({
        "index": index,
        "id": ix.id,
        "contactId": ix.contact_id,
        "type": ix.kind,
        "status": if ix.closed { "closed" } else { "open" },
        "recordingId": ix.recording.map(|r| state.dataset.recording(r).id),
        "archival_status": archival,
    })
}

fn truth_of(state: &SimState, index: usize, elapsed: Duration) -> Value {
    let rec = state.dataset.recording(index);
    let status = rec.status(elapsed);
    let mut media = serde_json::Map::new();
    for &channel in &rec.available_channels {
        let spec = rec.media(channel);
        let digests = state.digests.get(index, channel, &spec);
        media.insert(
            channel.as_str().to_string(),
            json!({ "sizeBytes": spec.total(), "sha256": digests.sha256, "md5": digests.md5 }),
        );
    }
    json!({
        "index": index,
        "id": rec.id,
        "callId": rec.call_id,
        "status": status.as_str(),
        "archived": status == Status::Archived,
        "expired": status == Status::Expired,
        "createdDate": rec.created_rfc3339(),
        "sizeBytes": rec.size_bytes(),
        "format": rec.format.extension(),
        "contentType": rec.format.content_type(),
        "availableChannels": rec.available_channels.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "media": media,
    })
}
