//! Seed 003 webhook registration (`POST|GET /api/v2/webhooks`, `DELETE …/{id}`), the events
//! the simulator sends (`media.recording.created` when a recording leaves `Processing`,
//! `media.transcript.completed` per published segment), and `POST /_sim/webhooks/replay`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::sim::api_error::ApiError;
use crate::sim::dataset::{Lifecycle, Status, rfc3339_ms};
use crate::sim::state::{Authed, SimState};
use crate::sim::transcripts::{
    Publication, publication, published_segments, segment_count, segment_id,
};
use crate::sim::webhooks::{Subscription, deliver, publish};

const MAX_SCHEDULED: usize = 20_000;

pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/api/v2/webhooks", post(register).get(list))
        .route("/api/v2/webhooks/{id}", delete(remove))
        .route("/_sim/webhooks/replay", post(replay))
}

fn subscription_json(sub: &Subscription) -> Value {
    json!({ "id": sub.id, "name": sub.name, "url": sub.url, "events": sub.events, "enabled": sub.enabled, "createdAt": rfc3339_ms(sub.created_ms) })
}

async fn register(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let url = body["url"]
        .as_str()
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"));
    let url = url.ok_or_else(|| ApiError::bad_request("url must be an http(s) URL"))?;
    let events: Vec<String> = match &body["events"] {
        Value::Array(items) => items
            .iter()
            .filter_map(|e| e.as_str().map(str::to_string))
            .collect(),
        Value::Null => Vec::new(),
        _ => {
            return Err(ApiError::bad_request(
                "events must be an array of event names",
            ));
        }
    };
    let sub = Subscription {
        id: format!("wh-{}", uuid::Uuid::new_v4().simple()),
        name: body["name"].as_str().unwrap_or("webhook").to_string(),
        url: url.to_string(),
        events,
        enabled: body["enabled"].as_bool().unwrap_or(true),
        secret: body["signingSecret"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| state.credentials.webhook_secret.clone()),
        created_ms: chrono::Utc::now().timestamp_millis(),
    };
    state.webhooks.add(sub.clone());
    schedule_future_events(&state, sub.clone());
    Ok((StatusCode::CREATED, Json(subscription_json(&sub))).into_response())
}

async fn list(_: Authed, State(state): State<Arc<SimState>>) -> Json<Value> {
    Json(Value::Array(
        state
            .webhooks
            .list()
            .iter()
            .map(subscription_json)
            .collect(),
    ))
}

async fn remove(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.webhooks.remove(&id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("webhook {id} not found")))
    }
}

fn now_iso() -> String {
    rfc3339_ms(chrono::Utc::now().timestamp_millis())
}

/// The `media.recording.created` event of recording `index`.
pub fn recording_event(state: &SimState, index: usize) -> Value {
    let rec = state.dataset.recording(index);
    json!({
        "eventId": format!("evt-rec-{}", rec.id),
        "eventType": "media.recording.created",
        "timestamp": now_iso(),
        "recordingId": rec.id,
        "callId": rec.call_id,
        "mediaType": rec.format.content_type(),
        "status": "available",
    })
}

/// The `media.transcript.completed` event of segment `k` of recording `index`.
pub fn transcript_event(state: &SimState, index: usize, k: usize) -> Value {
    let rec = state.dataset.recording(index);
    let id = segment_id(&state.dataset, index, k);
    json!({
        "eventId": format!("evt-tr-{id}"),
        "eventType": "media.transcript.completed",
        "timestamp": now_iso(),
        "transcriptId": id,
        "recordingId": rec.id,
        "callId": rec.call_id,
        "segmentIndex": k,
        "totalSegments": segment_count(&state.dataset, index),
        "status": "completed",
    })
}

/// Events still to come when `sub` registers: recordings leaving `Processing`, late segments.
fn schedule_future_events(state: &Arc<SimState>, sub: Subscription) {
    let elapsed = state.elapsed();
    let faults = state.faults();
    let ds = &state.dataset;
    let mut due: Vec<(Duration, usize, Option<usize>)> = Vec::new();
    for index in 0..ds.len() {
        if due.len() >= MAX_SCHEDULED {
            break;
        }
        if let Lifecycle::Processing { ready_after } = ds.lifecycle(index) {
            if ready_after > elapsed && sub.wants("media.recording.created") {
                due.push((ready_after, index, None));
            }
        }
        for k in 0..segment_count(ds, index) {
            if let Publication::Late(at) = publication(ds, &faults, index, k) {
                if at > elapsed && sub.wants("media.transcript.completed") {
                    due.push((at, index, Some(k)));
                }
            }
        }
    }
    if due.is_empty() {
        return;
    }
    due.sort();
    let state = state.clone();
    let start = Instant::now() - elapsed;
    tokio::spawn(async move {
        for (at, index, segment) in due {
            tokio::time::sleep_until((start + at).into()).await;
            let body = match segment {
                None => recording_event(&state, index),
                Some(k) => transcript_event(&state, index, k),
            };
            deliver(&state, sub.url.clone(), sub.secret.clone(), body);
        }
    });
}

/// `POST /_sim/webhooks/replay {"offset", "limit"}`: sends the events of recordings already
/// available (and their published segments, in publication order) to every subscriber.
async fn replay(State(state): State<Arc<SimState>>, body: Option<Json<Value>>) -> Json<Value> {
    let body = body.map(|Json(b)| b).unwrap_or(Value::Null);
    let offset = body["offset"].as_u64().unwrap_or(0) as usize;
    let limit = body["limit"].as_u64().unwrap_or(100) as usize;
    let elapsed = state.elapsed();
    let faults = state.faults();
    let mut sent = 0;
    for index in offset..(offset + limit).min(state.dataset.len()) {
        match state.dataset.status_of(index, elapsed) {
            Status::Processing => continue,
            Status::Available => {
                publish(
                    &state,
                    "media.recording.created",
                    recording_event(&state, index),
                );
                sent += 1;
            }
            // Archived or purged: no recording event, but the transcripts remain.
            Status::Archived | Status::Expired => {}
        }
        for k in published_segments(&state.dataset, &faults, index, elapsed) {
            publish(
                &state,
                "media.transcript.completed",
                transcript_event(&state, index, k),
            );
            sent += 1;
        }
    }
    Json(json!({ "events": sent, "subscribers": state.webhooks.list().len() }))
}
