//! The middleware every simulated route passes: counts the request, then (outside
//! `/_sim`) adds latency, applies the family's rate limit and injects 429s and 5xx.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::api_error::request_id;
use super::config::RetryAfterForm;
use super::state::SimState;

/// Endpoint family of a request path (rate limits are per family); `None` for paths
/// that are not rate limited (discovery, `/_sim`).
pub fn family_of(path: &str) -> Option<&'static str> {
    const FAMILIES: [(&str, &str); 20] = [
        ("/api/v1/oauth/", "auth"),
        ("/api/v2/oauth/", "auth"),
        ("/auth/token", "auth"),
        ("/authentication/", "auth"),
        ("/api/v2/recording/search", "search"),
        ("/api/v2/recordings/policies", "recordings"),
        ("/api/v2/recordings/", "recordings"),
        ("/api/v2/recordings", "search"),
        ("/api/v2/recording/", "recordings"),
        ("/api/v2/media/", "media"),
        ("/media-store/", "media"),
        ("/api/v2/archival/", "jobs"),
        ("/api/v1/recordings/export", "jobs"),
        ("/api/v2/interactions", "interactions"),
        ("/api/v2/webhooks", "webhooks"),
        ("/contacts/", "contacts"),
        ("/media-playback/", "media-playback"),
        ("/media-download/", "media-download"),
        ("/data-extraction/", "data-extraction"),
        ("/interaction-analytics-gateway/", "analytics"),
    ];
    FAMILIES
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map(|(_, family)| *family)
}

/// The middleware (install with `route_layer`, so the matched route is known).
pub async fn gate(State(state): State<Arc<SimState>>, request: Request, next: Next) -> Response {
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path) => format!("{} {}", request.method(), path.as_str()),
        None => format!("{} {}", request.method(), request.uri().path()),
    };
    let path = request.uri().path().to_string();
    let response = if path.starts_with("/_sim") {
        next.run(request).await
    } else {
        match refuse(&state, &path).await {
            Some(refusal) => refusal,
            None => next.run(request).await,
        }
    };
    state.stats.record(&route, response.status().as_u16());
    response
}

async fn refuse(state: &SimState, path: &str) -> Option<Response> {
    let faults = state.faults();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if let Some(family) = family_of(path) {
        if let Err(wait) = state
            .limiter
            .take(&faults.rate_limits, family, Instant::now())
        {
            return Some(throttled(state, faults.retry_after, wait, path));
        }
        if state.roll(faults.throttle_rate) {
            return Some(throttled(
                state,
                faults.retry_after,
                Duration::from_secs(1),
                path,
            ));
        }
    }
    if state.roll(faults.error_rate) {
        let status = [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
        ][(state.draw() * 3.0) as usize % 3];
        let body = json!({ "error": "InjectedFault", "message": "simulated server error", "requestId": request_id() });
        return Some((status, axum::Json(body)).into_response());
    }
    None
}

/// A 429 with `Retry-After` in seconds or as an HTTP date (rounded up, at least 1 s).
fn throttled(state: &SimState, form: RetryAfterForm, wait: Duration, route: &str) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let use_date = match form {
        RetryAfterForm::Seconds => false,
        RetryAfterForm::HttpDate => true,
        RetryAfterForm::Mixed => state.draw() < 0.5,
    };
    let value = if use_date {
        // An HTTP date has one-second resolution: add one so the wait is never short.
        httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(secs + 1))
    } else {
        secs.to_string()
    };
    let body = json!({ "message": "Too many requests", "route": route, "requestId": request_id() });
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_follow_path_prefixes() {
        assert_eq!(family_of("/api/v2/oauth/token"), Some("auth"));
        assert_eq!(family_of("/api/v2/recording/search"), Some("search"));
        assert_eq!(
            family_of("/api/v2/recording/abc/download"),
            Some("recordings")
        );
        assert_eq!(family_of("/api/v2/recordings"), Some("search"));
        assert_eq!(
            family_of("/api/v2/recordings/abc/retention"),
            Some("recordings")
        );
        assert_eq!(
            family_of("/media-download/v1/contacts"),
            Some("media-download")
        );
        assert_eq!(family_of("/.well-known/openid-configuration"), None);
    }
}
