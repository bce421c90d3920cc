//! Error answers of the simulated API: JSON bodies with `error`, `message` and
//! `requestId`, and the headers the real platform sends (`WWW-Authenticate` on 401).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::tokens::TokenRefusal;

/// An error answer.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized(TokenRefusal),
    NotFound(String),
    BadRequest(String),
    Conflict(String),
    /// Any other status with a code and message.
    Other(StatusCode, &'static str, String),
}

impl ApiError {
    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::NotFound(what.into())
    }

    pub fn bad_request(why: impl Into<String>) -> Self {
        ApiError::BadRequest(why.into())
    }
}

/// A request id for error bodies and `X-Request-Id` headers.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::Unauthorized(refusal) => {
                let body = json!({ "error": "invalid_token", "message": refusal.description(), "requestId": request_id() });
                let challenge = format!(
                    "Bearer realm=\"cxone-sim\", error=\"invalid_token\", error_description=\"{}\"",
                    refusal.description()
                );
                let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, value);
                }
                return response;
            }
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, "NotFound", what),
            ApiError::BadRequest(why) => (StatusCode::BAD_REQUEST, "BadRequest", why),
            ApiError::Conflict(why) => (StatusCode::CONFLICT, "Conflict", why),
            ApiError::Other(status, code, message) => (status, code, message),
        };
        let body = json!({ "error": code, "message": message, "requestId": request_id() });
        (status, axum::Json(body)).into_response()
    }
}
