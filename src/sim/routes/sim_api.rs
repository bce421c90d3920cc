//! Test and verification endpoints: `GET /_sim/stats`, `POST /_sim/stats/reset`,
//! `GET|POST /_sim/control` (JSON merge patch of the fault knobs), `POST /_sim/clock/advance`
//! (`{"secs": N}`: moves the simulator's clock ahead, e.g. so `Processing` recordings become
//! ready).

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

use crate::sim::api_error::ApiError;
use crate::sim::config::Faults;
use crate::sim::state::SimState;

pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/_sim/stats", get(stats))
        .route("/_sim/stats/reset", post(reset_stats))
        .route("/_sim/control", get(control).post(patch_control))
        .route("/_sim/clock/advance", post(advance_clock))
}

async fn advance_clock(
    State(state): State<Arc<SimState>>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let secs = body["secs"]
        .as_u64()
        .ok_or_else(|| ApiError::bad_request("expected {\"secs\": N} with N >= 0".to_string()))?;
    state.advance_clock(std::time::Duration::from_secs(secs));
    tracing::info!(secs, "simulator clock advanced");
    Ok(Json(
        serde_json::json!({ "elapsed_ms": state.elapsed().as_millis() as u64 }),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
