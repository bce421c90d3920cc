//! Seed 003 (recordings + transcripts): `GET /api/v2/media/recordings/{id}` (status and
//! storage location), `/content` (bearer-authorised media with `Range`), and
//! `GET /api/v2/media/transcripts/{id}` (one segment; 404 until published).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::sim::api_error::ApiError;
use crate::sim::dataset::Status;
use crate::sim::media::Channel;
use crate::sim::media_stream::serve;
use crate::sim::routes::recording::find;
use crate::sim::state::{Authed, SimState};
use crate::sim::transcripts::{
    parse_segment_id, published_segments, segment_count, segment_id, segment_json, visible,
};

pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/api/v2/media/recordings/{id}", get(recording))
        .route("/api/v2/media/recordings/{id}/content", get(content))
        .route("/api/v2/media/transcripts/{id}", get(transcript))
}

/// Seed-003 spelling of a status and where the media lives.
fn status_and_location(status: Status) -> (&'static str, &'static str) {
    match status {
        Status::Processing => ("processing", "active"),
        Status::Available => ("available", "active"),
        Status::Archived => ("archived", "cold"),
        Status::Expired => ("expired", "deleted"),
    }
}

async fn recording(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rec = find(&state, &id)?;
    let index = state.dataset.index_of(&id).unwrap_or_default();
    let elapsed = state.elapsed();
    let (status, location) = status_and_location(rec.status(elapsed));
    let faults = state.faults();
    let published: Vec<String> = published_segments(&state.dataset, &faults, index, elapsed)
        .into_iter()
        .map(|k| segment_id(&state.dataset, index, k))
        .collect();
    Ok(Json(json!({
        "id": rec.id,
        "recordingId": rec.id,
        "callId": rec.call_id,
        "status": status,
        "storageLocation": location,
        "mediaType": rec.format.content_type(),
        "format": rec.format.extension(),
        "sizeBytes": rec.size_bytes(),
        "durationSeconds": rec.duration_secs,
        "agentId": rec.agent_id.to_string(),
        "createdAt": rec.created_rfc3339(),
        "totalTranscriptSegments": segment_count(&state.dataset, index),
        "transcriptIds": published,
    })))
}

async fn content(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let rec = match find(&state, &id) {
        Ok(rec) => rec,
        Err(err) => return err.into_response(),
    };
    match rec.status(state.elapsed()) {
        Status::Available => serve(&state, &rec.media(Channel::Combined), &headers, None),
        Status::Processing => {
            ApiError::not_found(format!("media of recording {id} is still processing"))
                .into_response()
        }
        Status::Archived | Status::Expired => {
            ApiError::not_found(format!("media of recording {id} is archived or expired"))
                .into_response()
        }
    }
}

async fn transcript(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (index, k) = parse_segment_id(&state.dataset, &id)
        .ok_or_else(|| ApiError::not_found(format!("transcript {id} not found")))?;
    if !visible(&state.dataset, &state.faults(), index, k, state.elapsed()) {
        return Err(ApiError::not_found(format!("transcript {id} not found")));
    }
    Ok(Json(segment_json(&state.dataset, index, k)))
}
