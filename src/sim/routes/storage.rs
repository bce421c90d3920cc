//! The simulated object store behind presigned URLs (`/media-store/recordings/{id}/{file}`):
//! checks signature then expiry (403 with S3-style XML), 404 for media not there (still
//! processing, archived, purged), then streams the media with `Range` support.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::sim::dataset::Status;
use crate::sim::media::Channel;
use crate::sim::media_stream::serve;
use crate::sim::presign::UrlRefusal;
use crate::sim::state::SimState;
use crate::sim::stats::bump;

pub fn routes() -> Router<Arc<SimState>> {
    Router::new().route("/media-store/recordings/{id}/{file}", get(object))
}

/// An S3-style XML error.
pub fn xml_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

async fn object(
    State(state): State<Arc<SimState>>,
    Path((id, file)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let expires = params.get("Expires").and_then(|v| v.parse().ok());
    let checked = state.signer.check(
        uri.path(),
        expires,
        params.get("Signature").map(String::as_str),
        now,
    );
    let expires = match checked {
        Ok(expires) => expires,
        Err(refusal) => {
            bump(&state.stats.urls_refused);
            return match refusal {
                UrlRefusal::Expired => {
                    xml_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired")
                }
                UrlRefusal::BadSignature => xml_error(
                    StatusCode::FORBIDDEN,
                    "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you provided",
                ),
            };
        }
    };
    let no_such_key = || {
        xml_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        )
    };
    let Some(index) = state.dataset.index_of(&id) else {
        return no_such_key();
    };
    let rec = state.dataset.recording(index);
    let Some(channel) = file
        .split_once('.')
        .and_then(|(name, _)| Channel::parse(name))
    else {
        return no_such_key();
    };
    if rec.status(state.elapsed()) != Status::Available {
        return no_such_key();
    }
    serve(&state, &rec.media(channel), &headers, Some(expires))
}
