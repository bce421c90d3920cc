//! Test and verification endpoints: `GET /_sim/stats`, `POST /_sim/stats/reset`,
//! `GET|POST /_sim/control` (JSON merge patch of the fault knobs) and
//! `GET /_sim/truth/recordings?offset&limit` (ground truth with media digests).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::sim::api_error::ApiError;
use crate::sim::config::Faults;
use crate::sim::dataset::Status;
use crate::sim::state::SimState;

const MAX_TRUTH_PAGE: usize = 1000;

pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/_sim/stats", get(stats))
        .route("/_sim/stats/reset", post(reset_stats))
        .route("/_sim/control", get(control).post(patch_control))
        .route("/_sim/truth/recordings", get(truth_recordings))
}

async fn stats(State(state): State<Arc<SimState>>) -> Json<Value> {
    Json(state.stats.to_json())
}

async fn reset_stats(State(state): State<Arc<SimState>>) -> Json<Value> {
    state.stats.reset();
    Json(state.stats.to_json())
}

async fn control(State(state): State<Arc<SimState>>) -> Json<Value> {
    Json(serde_json::to_value(&*state.faults()).unwrap_or(Value::Null))
}

/// RFC 7386 merge patch: objects merge, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// Applies a JSON merge patch to the fault knobs; answers the new knobs.
pub fn apply_patch(state: &SimState, patch: &Value) -> Result<Faults, String> {
    let mut current = serde_json::to_value(&*state.faults()).map_err(|err| err.to_string())?;
    merge_patch(&mut current, patch);
    let faults: Faults =
        serde_json::from_value(current).map_err(|err| format!("invalid fault knobs: {err}"))?;
    faults.validate()?;
    state.set_faults(faults.clone());
    Ok(faults)
}

async fn patch_control(
    State(state): State<Arc<SimState>>,
    Json(patch): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let faults = apply_patch(&state, &patch).map_err(ApiError::bad_request)?;
    tracing::info!(patch = %patch, "simulator faults changed");
    Ok(Json(serde_json::to_value(faults).unwrap_or(Value::Null)))
}

async fn truth_recordings(
    State(state): State<Arc<SimState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let parse = |name: &str, default: usize| -> Result<usize, ApiError> {
        params.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| ApiError::bad_request(format!("{name} must be an integer")))
        })
    };
    let offset = parse("offset", 0)?;
    let limit = parse("limit", 100)?.min(MAX_TRUTH_PAGE);
    let total = state.dataset.len();
    let worker = state.clone();
    let records = tokio::task::spawn_blocking(move || {
        let elapsed = worker.elapsed();
        (offset..(offset + limit).min(total))
            .map(|i| truth_of(&worker, i, elapsed))
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
        json!({ "total": total, "offset": offset, "limit": limit, "recordings": records }),
    ))
}

fn truth_of(state: &SimState, index: usize, elapsed: std::time::Duration) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_merges_replaces_and_removes() {
        let mut target = json!({ "a": 1, "b": { "c": 2, "d": 3 }, "e": 4 });
        merge_patch(
            &mut target,
            &json!({ "a": 5, "b": { "c": null, "x": 1 }, "e": null }),
        );
        assert_eq!(target, json!({ "a": 5, "b": { "d": 3, "x": 1 } }));
    }
}
