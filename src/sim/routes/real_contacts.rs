//! Real dialect, reading side: `GET /contacts/completed` (skip/top, `_links.next`,
//! `updatedSince`, `lastPollTime`), `GET /media-playback/v1/contacts` (short-lived
//! `fileToPlayUrl`), and interaction-analytics segments (cursor, `links.next`) and
//! analyzed transcripts.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::sim::api_error::ApiError;
use crate::sim::dataset::{Status, parse_time_ms, rfc3339_ms};
use crate::sim::interactions::{count, interaction, key, parse_contact_id};
use crate::sim::media::Channel;
use crate::sim::routes::recording::presigned_url;
use crate::sim::state::{Authed, SimState};
use crate::sim::transcripts::{segment_count, utterances};

pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/contacts/completed", get(completed))
        .route("/media-playback/v1/contacts", get(playback))
        .route(
            "/interaction-analytics-gateway/v2/segments/analyzed",
            get(analyzed_segments),
        )
        .route(
            "/interaction-analytics-gateway/v2/segments/{id}/analyzed-transcript",
            get(analyzed_transcript),
        )
}

fn time_param(params: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    params
        .get(name)
        .map(|v| {
            parse_time_ms(v)
                .ok_or_else(|| ApiError::bad_request(format!("{name} must be an ISO 8601 time")))
        })
        .transpose()
}

fn encode_query(params: &HashMap<String, String>) -> String {
    let mut pairs: Vec<_> = params.iter().collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.replace('%', "%25")
                    .replace('+', "%2B")
                    .replace(':', "%3A")
                    .replace(' ', "%20")
                    .replace('&', "%26")
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

async fn completed(
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
    let (skip, top) = (number("skip", 0)?, number("top", 100)?);
    if top == 0 || top > 10_000 {
        return Err(ApiError::bad_request("top must be within 1..=10000"));
    }
    let (start, end, updated_since) = (
        time_param(&params, "startDate")?,
        time_param(&params, "endDate")?,
        time_param(&params, "updatedSince")?,
    );
    let order = params
        .get("orderBy")
        .map(String::as_str)
        .unwrap_or("contactId asc");
    let by_update = order.starts_with("lastUpdateTime");
    let desc = order.ends_with("desc");
    let worker = state.clone();
    let hits = tokio::task::spawn_blocking(move || {
        let ds = &worker.dataset;
        let mut hits: Vec<(i64, usize)> = (0..count(ds))
            .map(|i| key(ds, i))
            .filter(|ix| ix.closed)
            .filter(|ix| {
                start.is_none_or(|s| ix.created_ms >= s) && end.is_none_or(|e| ix.created_ms < e)
            })
            .filter(|ix| updated_since.is_none_or(|u| ix.updated_ms > u))
            .map(|ix| {
                (
                    if by_update {
                        ix.updated_ms
                    } else {
                        ix.index as i64
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
    let page: Vec<Value> = hits
        .iter()
        .skip(skip)
        .take(top)
        .map(|&(_, i)| interaction(&state.dataset, i).completed_contact())
        .collect();
    let link = |skip: usize| {
        let mut p = params.clone();
        p.insert("skip".into(), skip.to_string());
        p.insert("top".into(), top.to_string());
        format!(
            "{}/contacts/completed?{}",
            state.base_url(),
            encode_query(&p)
        )
    };
    let next = (skip + top < hits.len()).then(|| link(skip + top));
    let previous = (skip > 0).then(|| link(skip.saturating_sub(top)));
    Ok(Json(json!({
        "totalRecords": hits.len(),
        "_links": { "self": link(skip), "next": next, "previous": previous },
        "lastPollTime": rfc3339_ms(chrono::Utc::now().timestamp_millis()),
        "completedContacts": page,
    })))
}

async fn playback(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let id = params
        .get("acd-call-id")
        .ok_or_else(|| ApiError::bad_request("acd-call-id is required"))?;
    let media_type = params
        .get("media-type")
        .map(String::as_str)
        .unwrap_or("all");
    if !["voice-only", "voice-and-screen", "chat", "email", "all"].contains(&media_type) {
        return Err(ApiError::bad_request(
            "media-type must be voice-only, voice-and-screen, chat, email or all",
        ));
    }
    let index = parse_contact_id(&state.dataset, id)
        .ok_or_else(|| ApiError::not_found(format!("contact {id} not found")))?;
    let ix = interaction(&state.dataset, index);
    let mut items = Vec::new();
    if let Some(r) = ix
        .recording
        .filter(|_| media_type != "chat" && media_type != "email")
    {
        let rec = state.dataset.recording(r);
        if rec.status(state.elapsed()) != Status::Available {
            return Err(ApiError::not_found(format!(
                "no playable media for contact {id} ({})",
                rec.status(state.elapsed()).as_str()
            )));
        }
        let (url, _) = presigned_url(&state, &rec, Channel::Combined);
        items.push(json!({
            "mediaType": "voice-only", "channelType": "Telephony",
            "startTime": rec.created_rfc3339(), "endTime": rfc3339_ms(rec.ended_ms()),
            "data": {
                "fileToPlayUrl": url,
                "fileType": rec.format.extension(),
                "sizeBytes": rec.size_bytes(),
                "participantDataList": [
                    { "participantType": "AGENT", "agentName": rec.agent_name, "userId": rec.agent_id.to_string(), "channel": "agent" },
                    { "participantType": "CUSTOMER", "agentName": Value::Null, "userId": Value::Null, "channel": "caller" },
                ],
            },
        }));
    } else if ix.kind != "voice" && (media_type == ix.kind || media_type == "all") {
        let messages: Vec<Value> = (0..4)
            .map(|n| json!({ "timeStamp": rfc3339_ms(ix.created_ms + n * 30_000), "participantType": if n % 2 == 0 { "CUSTOMER" } else { "AGENT" }, "text": format!("message {n} of contact {}", ix.contact_id) }))
            .collect();
        items.push(json!({ "mediaType": ix.kind, "channelType": ix.kind, "startTime": rfc3339_ms(ix.created_ms), "endTime": rfc3339_ms(ix.ended_ms), "data": { "messages": messages } }));
    }
    if items.is_empty() {
        return Err(ApiError::not_found(format!(
            "no {media_type} media for contact {id}"
        )));
    }
    Ok(Json(
        json!({ "contactId": ix.contact_id, "acdcontactId": ix.contact_id, "interactions": items }),
    ))
}

/// Analytics segment id of the recording of contact `index`.
fn analytics_segment_id(contact_id: u64) -> String {
    format!("seg-{contact_id}")
}

async fn analyzed_segments(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (begin, end) = (
        time_param(&params, "beginningDate")?,
        time_param(&params, "endingDate")?,
    );
    let page_size: usize = params
        .get("pageSize")
        .map_or(Ok(100), |v| v.parse())
        .map_err(|_| ApiError::bad_request("pageSize must be an integer"))?;
    if page_size == 0 || page_size > 1000 {
        return Err(ApiError::bad_request("pageSize must be within 1..=1000"));
    }
    let start = match params.get("cursor") {
        Some(cursor) => {
            let raw = URL_SAFE_NO_PAD
                .decode(cursor)
                .map_err(|_| ApiError::bad_request("cursor is not valid"))?;
            String::from_utf8(raw)
                .ok()
                .and_then(|s| s.strip_prefix("pos:").and_then(|n| n.parse().ok()))
                .ok_or_else(|| ApiError::bad_request("cursor is not valid"))?
        }
        None => 0usize,
    };
    let ds = &state.dataset;
    let hits: Vec<usize> = (0..ds.len().min(count(ds)))
        .filter(|&i| segment_count(ds, i) > 0)
        .filter(|&i| {
            begin.is_none_or(|b| ds.created_ms(i) >= b) && end.is_none_or(|e| ds.created_ms(i) < e)
        })
        .collect();
    let end_pos = (start + page_size).min(hits.len());
    let items: Vec<Value> = hits
        .get(start..end_pos)
        .unwrap_or_default()
        .iter()
        .map(|&i| {
            let ix = interaction(ds, i);
            json!({
                "segmentId": analytics_segment_id(ix.contact_id), "contactId": ix.contact_id, "acdContactId": ix.contact_id,
                "startDate": rfc3339_ms(ix.created_ms), "endDate": rfc3339_ms(ix.ended_ms),
                "agentId": ix.agent_id.to_string(), "mediaType": "voice", "language": "en-US",
            })
        })
        .collect();
    let next = (end_pos < hits.len()).then(|| {
        let mut p = params.clone();
        p.insert(
            "cursor".into(),
            URL_SAFE_NO_PAD.encode(format!("pos:{end_pos}")),
        );
        format!(
            "{}/interaction-analytics-gateway/v2/segments/analyzed?{}",
            state.base_url(),
            encode_query(&p)
        )
    });
    Ok(Json(
        json!({ "totalRecords": hits.len(), "interactions": items, "links": { "next": next } }),
    ))
}

async fn analyzed_transcript(
    _: Authed,
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let ds = &state.dataset;
    let index = id
        .strip_prefix("seg-")
        .and_then(|c| parse_contact_id(ds, c))
        .filter(|&i| i < ds.len() && segment_count(ds, i) > 0)
        .ok_or_else(|| ApiError::not_found(format!("segment {id} not found")))?;
    let blocks: Vec<Value> = (0..segment_count(ds, index))
        .flat_map(|k| utterances(ds, index, k))
        .map(|(start, end, speaker, text, confidence)| {
            json!({
                "channelName": if speaker == "agent" { "Agent" } else { "Customer" },
                "offset": start, "text": text,
                "voiceMetadata": { "startTime": start, "endTime": end, "confidence": confidence },
            })
        })
        .collect();
    Ok(Json(
        json!({ "segmentId": id, "contactId": interaction(ds, index).contact_id, "transcriptBlocks": blocks }),
    ))
}
