//! Seed 002 (recording download): `/api/v2/recording/search` (filters, sort, page/pageSize,
//! `nextPageToken`; body on GET or POST, or query parameters), recording detail, and the
//! download-URL endpoint that hands out presigned media URLs per channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::sim::api_error::ApiError;
use crate::sim::dataset::{Recording, Status, rfc3339_ms};
use crate::sim::media::Channel;
use crate::sim::search::{Cursor, Filter, SearchQuery, Sort};
use crate::sim::state::{Authed, SimState};

const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 1000;

pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/api/v2/recording/search", get(search).post(search))
        .route("/api/v2/recording/{id}", get(detail))
        .route("/api/v2/recording/{id}/download", get(download_url))
}

/// The seed-002 JSON of a recording.
pub fn recording_json(rec: &Recording, status: Status) -> Value {
    json!({
        "recordingId": rec.id,
        "callId": rec.call_id,
        "status": status.as_str(),
        "createdDate": rec.created_rfc3339(),
        "endDate": rfc3339_ms(rec.ended_ms()),
        "durationSeconds": rec.duration_secs,
        "agentId": rec.agent_id.to_string(),
        "agentName": rec.agent_name,
        "direction": rec.direction,
        "channelType": rec.channel_type,
        "fileFormat": rec.format.extension(),
        "mediaType": rec.format.content_type(),
        "sizeBytes": rec.size_bytes(),
        "availableChannels": rec.available_channels.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
    })
}

/// Looks a recording up by id, or 404.
pub fn find(state: &SimState, id: &str) -> Result<Recording, ApiError> {
    let index = state
        .dataset
        .index_of(id)
        .ok_or_else(|| ApiError::not_found(format!("recording {id} not found")))?;
    Ok(state.dataset.recording(index))
}

fn number(value: Option<&Value>, name: &str) -> Result<Option<usize>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|n| Some(n as usize))
            .ok_or_else(|| ApiError::bad_request(format!("{name} must be a positive integer"))),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{name} must be a positive integer"))),
        Some(_) => Err(ApiError::bad_request(format!(
            "{name} must be a positive integer"
        ))),
    }
}

/// Filters from query parameters: `status`, `agentId`, `direction`, `channelType`,
/// `createdFrom`/`startDate` (gte), `createdTo`/`endDate` (lt), `sort=field:asc|desc`.
fn query_params_to_search(params: &HashMap<String, String>) -> SearchQuery {
    let mut query = SearchQuery::default();
    let mut add = |field: &str, operator: &str, value: &String| {
        query.filters.push(Filter {
            field: field.into(),
            operator: operator.into(),
            value: json!(value),
        });
    };
    for (key, value) in params {
        match key.as_str() {
            "status" | "agentId" | "direction" | "channelType" | "fileFormat" => {
                add(key, "eq", value)
            }
            "createdFrom" | "startDate" => add("createdDate", "gte", value),
            "createdTo" | "endDate" => add("createdDate", "lt", value),
            _ => {}
        }
    }
    if let Some(sort) = params.get("sort") {
        let (field, direction) = sort.split_once(':').unwrap_or((sort, "asc"));
        query.sort.push(Sort {
            field: field.into(),
            direction: direction.into(),
        });
    }
    query
        .filters
        .sort_by(|a, b| a.field.cmp(&b.field).then(a.operator.cmp(&b.operator)));
    query
}

async fn search(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(&body)
            .map_err(|err| ApiError::bad_request(format!("request body is not JSON: {err}")))?
    };
    let token = body
        .get("pageToken")
        .or_else(|| body.get("nextPageToken"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            params
                .get("pageToken")
                .or_else(|| params.get("nextPageToken"))
                .cloned()
        })
        .filter(|t| !t.is_empty());
    let (query, cursor, page_size) = if let Some(token) = token {
        SearchQuery::from_token(&token).map_err(ApiError::bad_request)?
    } else {
        let mut query = query_params_to_search(&params);
        if let Some(filters) = body.get("filters") {
            let extra: Vec<Filter> = serde_json::from_value(filters.clone())
                .map_err(|err| ApiError::bad_request(format!("filters: {err}")))?;
            query.filters.extend(extra);
        }
        if let Some(sort) = body.get("sort") {
            query.sort = serde_json::from_value(sort.clone())
                .map_err(|err| ApiError::bad_request(format!("sort: {err}")))?;
        }
        let page_size = number(body.get("pageSize"), "pageSize")?
            .or(number(
                params.get("pageSize").map(|s| json!(s)).as_ref(),
                "pageSize",
            )?)
            .unwrap_or(DEFAULT_PAGE_SIZE);
        let page = number(body.get("page"), "page")?
            .or(number(
                params.get("page").map(|s| json!(s)).as_ref(),
                "page",
            )?)
            .unwrap_or(1);
        if page == 0 {
            return Err(ApiError::bad_request("page starts at 1"));
        }
        let cursor = Cursor {
            next: (page - 1) * page_size,
            after: None,
        };
        (query, cursor, page_size)
    };
    if page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(ApiError::bad_request(format!(
            "pageSize must be within 1..={MAX_PAGE_SIZE}"
        )));
    }
    let compiled = query.compile().map_err(ApiError::bad_request)?;
    let elapsed = state.elapsed();
    let dataset = state.clone();
    let page = tokio::task::spawn_blocking(move || {
        compiled.page(&dataset.dataset, cursor, page_size, elapsed)
    })
    .await
    .map_err(|err| {
        ApiError::Other(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            err.to_string(),
        )
    })?;
    let recordings: Vec<Value> = page
        .indexes
        .iter()
        .map(|&i| {
            let rec = state.dataset.recording(i);
            recording_json(&rec, rec.status(elapsed))
        })
        .collect();
    Ok(Json(json!({
        "recordings": recordings,
        "page": page.start / page_size + 1,
        "pageSize": page_size,
        "totalCount": page.total,
        "totalPages": page.total.div_ceil(page_size),
        "nextPageToken": page.next.map(|next| query.token(next, page_size)),
    })))
}

async fn detail(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rec = find(&state, &id)?;
    Ok(Json(recording_json(&rec, rec.status(state.elapsed()))))
}

/// Presigned URL of one channel's media, valid for the configured URL TTL.
pub fn presigned_url(state: &SimState, rec: &Recording, channel: Channel) -> (String, u64) {
    let ttl = state.faults().url_ttl;
    let expires = (SystemTime::now() + ttl)
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
        .ceil() as u64;
    let path = format!(
        "/media-store/recordings/{}/{}.{}",
        rec.id,
        channel.as_str(),
        rec.format.extension()
    );
    let query = state
        .signer
        .query(&path, expires, &state.credentials.access_key_id);
    (format!("{}{path}?{query}", state.base_url()), expires)
}

async fn download_url(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let rec = find(&state, &id)?;
    let name = params
        .get("channel")
        .map(String::as_str)
        .unwrap_or("combined");
    let channel = Channel::parse(name).ok_or_else(|| {
        ApiError::bad_request(format!(
            "channel must be combined, agent or caller, got {name}"
        ))
    })?;
    if rec.status(state.elapsed()) == Status::Archived {
        return Err(ApiError::Other(
            axum::http::StatusCode::NOT_FOUND,
            "MediaArchived",
            format!("media of recording {id} is archived"),
        ));
    }
    let (url, expires) = presigned_url(&state, &rec, channel);
    Ok(Json(json!({
        "url": url,
        "contentType": rec.format.content_type(),
        "sizeBytes": rec.media(channel).total(),
        "channel": channel.as_str(),
        "expiresAt": rfc3339_ms(expires as i64 * 1000),
    })))
}
