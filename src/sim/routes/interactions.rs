//! Seed 004 (interaction archival): `POST /api/v2/interactions/query` (filter, orderBy,
//! cursor `pagination.next_page`), `GET /api/v2/interactions/{id}`, custom fields
//! (`GET /api/v2/custom-fields`, `PUT|PATCH` of `archival_status` on closed interactions).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::sim::api_error::ApiError;
use crate::sim::dataset::rfc3339_ms;
use crate::sim::interactions::{Interaction, InteractionKey, count, interaction, key, parse_id};
use crate::sim::state::{Authed, SimState};
use crate::sim::transcripts::{segment_count, segment_id};

/// The one custom field tenants have: `archival_status`.
pub const ARCHIVAL_FIELD_ID: &str = "cf-archival-status";
const MAX_PAGE: usize = 500;

pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/api/v2/interactions/query", post(query))
        .route("/api/v2/interactions/{id}", get(detail))
        .route(
            "/api/v2/interactions/{id}/custom-fields",
            put(set_field_body).patch(set_field_body),
        )
        .route(
            "/api/v2/interactions/{id}/custom-fields/{field}",
            put(set_field),
        )
        .route("/api/v2/custom-fields", get(fields))
}

/// Parses `"status:closed"`-style filters (clauses joined by `,` or ` AND `).
fn parse_filter(filter: &str) -> Result<Vec<(String, String)>, ApiError> {
    filter
        .split(',')
        .flat_map(|part| part.split(" AND "))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|clause| {
            let (field, value) = clause.split_once(':').ok_or_else(|| {
                ApiError::bad_request(format!("filter clause {clause:?} is not field:value"))
            })?;
            match field.trim() {
                "status" | "type" => Ok((field.trim().to_string(), value.trim().to_lowercase())),
                other => Err(ApiError::bad_request(format!(
                    "cannot filter on {other:?} (status, type)"
                ))),
            }
        })
        .collect()
}

fn matches(ix: &InteractionKey, clauses: &[(String, String)]) -> bool {
    clauses.iter().all(|(field, value)| match field.as_str() {
        "status" => value == if ix.closed { "closed" } else { "open" },
        _ => value == ix.kind,
    })
}

async fn query(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let token = body["page_token"]
        .as_str()
        .or_else(|| body["pageToken"].as_str())
        .filter(|t| !t.is_empty());
    let (request, start) = match token {
        Some(token) => {
            let raw = URL_SAFE_NO_PAD
                .decode(token)
                .map_err(|_| ApiError::bad_request("page_token is not valid"))?;
            let cursor: Value = serde_json::from_slice(&raw)
                .map_err(|_| ApiError::bad_request("page_token is not valid"))?;
            (
                cursor["q"].clone(),
                cursor["next"].as_u64().unwrap_or(0) as usize,
            )
        }
        None => (
            json!({ "filter": body["filter"], "orderBy": body["orderBy"], "pageSize": body["pageSize"] }),
            0,
        ),
    };
    let clauses = parse_filter(request["filter"].as_str().unwrap_or(""))?;
    let page_size = request["pageSize"].as_u64().unwrap_or(100) as usize;
    if page_size == 0 || page_size > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "pageSize must be within 1..={MAX_PAGE}"
        )));
    }
    let order = request["orderBy"]
        .as_str()
        .unwrap_or("createdTime asc")
        .to_string();
    let (field, direction) = order.split_once(' ').unwrap_or((order.as_str(), "asc"));
    if !matches!(field, "createdTime" | "updatedTime") || !matches!(direction, "asc" | "desc") {
        return Err(ApiError::bad_request(
            "orderBy must be createdTime|updatedTime asc|desc",
        ));
    }
    let worker = state.clone();
    let (field, desc) = (field.to_string(), direction == "desc");
    let hits = tokio::task::spawn_blocking(move || {
        let ds = &worker.dataset;
        let mut hits: Vec<(i64, usize)> = (0..count(ds))
            .map(|i| key(ds, i))
            .filter(|ix| matches(ix, &clauses))
            .map(|ix| {
                (
                    if field == "updatedTime" {
                        ix.updated_ms
                    } else {
                        ix.created_ms
                    },
                    ix.index,
                )
            })
            .collect();
        hits.sort();
        if desc {
            hits.reverse();
        }
        hits
    })
    .await
    .map_err(|err| {
        ApiError::Other(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            err.to_string(),
        )
    })?;
    let end = (start + page_size).min(hits.len());
    let items: Vec<Value> = hits
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(|&(_, i)| summary(&state, &interaction(&state.dataset, i)))
        .collect();
    let next = (end < hits.len())
        .then(|| URL_SAFE_NO_PAD.encode(json!({ "q": request, "next": end }).to_string()));
    Ok(Json(json!({
        "interactions": items,
        "pagination": { "next_page": next, "page_size": page_size, "total": hits.len() },
    })))
}

fn custom_fields(state: &SimState, index: usize) -> Value {
    let value = state
        .custom_fields
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(index, ARCHIVAL_FIELD_ID.to_string()))
        .cloned();
    json!({ "archival_status": value })
}

fn summary(state: &SimState, ix: &Interaction) -> Value {
    json!({
        "id": ix.id,
        "type": ix.kind,
        "status": if ix.closed { "closed" } else { "open" },
        "created_time": rfc3339_ms(ix.created_ms),
        "updated_time": rfc3339_ms(ix.updated_ms),
        "custom_fields": custom_fields(state, ix.index),
    })
}

async fn detail(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let index = parse_id(&state.dataset, &id)
        .ok_or_else(|| ApiError::not_found(format!("interaction {id} not found")))?;
    let ix = interaction(&state.dataset, index);
    let mut body = summary(&state, &ix);
    let mut media = Vec::new();
    if let Some(r) = ix.recording {
        let rec = state.dataset.recording(r);
        media.push(json!({
            "id": rec.id, "type": "recording", "duration_ms": rec.duration_secs * 1000,
            "format": rec.format.extension(), "size_bytes": rec.size_bytes(),
            "playback_url": format!("{}/api/v2/media/recordings/{}/content", state.base_url(), rec.id),
            "created_time": rec.created_rfc3339(),
        }));
        for k in 0..segment_count(&state.dataset, r) {
            let sid = segment_id(&state.dataset, r, k);
            media.push(json!({
                "id": sid, "type": "transcript", "duration_ms": Value::Null, "format": "json",
                "playback_url": format!("{}/api/v2/media/transcripts/{sid}", state.base_url()),
                "created_time": rfc3339_ms(ix.ended_ms),
            }));
        }
    }
    body["participants"] = ix.participants();
    body["media"] = Value::Array(media);
    body["agent_id"] = json!(ix.agent_id.to_string());
    body["queue"] = json!(ix.skill);
    Ok(Json(body))
}

fn store_field(
    state: &SimState,
    id: &str,
    field: &str,
    value: &Value,
) -> Result<Json<Value>, ApiError> {
    let index = parse_id(&state.dataset, id)
        .ok_or_else(|| ApiError::not_found(format!("interaction {id} not found")))?;
    if field != ARCHIVAL_FIELD_ID && field != "archival_status" {
        return Err(ApiError::not_found(format!(
            "custom field {field} not found"
        )));
    }
    let value = value
        .as_str()
        .ok_or_else(|| ApiError::bad_request("value must be a string"))?;
    if !interaction(&state.dataset, index).closed {
        return Err(ApiError::Conflict(format!(
            "interaction {id} is still open; custom fields can change only after closure"
        )));
    }
    state
        .custom_fields
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert((index, ARCHIVAL_FIELD_ID.to_string()), value.to_string());
    Ok(Json(
        json!({ "interaction_id": id, "field_id": ARCHIVAL_FIELD_ID, "value": value }),
    ))
}

async fn set_field(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Path((id, field)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    store_field(&state, &id, &field, &body["value"])
}

async fn set_field_body(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let field = body["field_id"]
        .as_str()
        .or_else(|| body["fieldId"].as_str())
        .unwrap_or_default()
        .to_string();
    store_field(&state, &id, &field, &body["value"])
}

async fn fields(_: Authed) -> Json<Value> {
    Json(json!([{ "id": ARCHIVAL_FIELD_ID, "name": "archival_status", "type": "string" }]))
}
