//! [`ApiError`]: what went wrong talking to a tenant's API, whether retrying can help, and
//! the map scripts catch. Messages name the tenant and the path, never a token or secret.

use rhai::{EvalAltResult, Map};

use crate::natives::thrown::Thrown;

/// An error from the API stages.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ApiError {
    /// The tenant configuration cannot be used.
    #[error("tenant {tenant}: invalid configuration: {message}")]
    Config { tenant: String, message: String },
    /// The server answered with a non-success status.
    #[error("tenant {tenant}: {method} {path} failed with HTTP {status}: {message}")]
    Status {
        tenant: String,
        method: String,
        path: String,
        status: u16,
        message: String,
        request_id: Option<String>,
    },
    /// No answer: connect, read or protocol error (the message has no URL query or headers).
    #[error("tenant {tenant}: {method} {path}: {message}")]
    Transport {
        tenant: String,
        method: String,
        path: String,
        message: String,
    },
    /// The token endpoint refused the credentials (or could not be reached).
    #[error("tenant {tenant}: token request to {token_url} failed{}: {message}", status_text(*.status))]
    Auth {
        tenant: String,
        token_url: String,
        status: Option<u16>,
        message: String,
        retryable: bool,
    },
    /// The response was larger than `max_response_bytes`.
    #[error("tenant {tenant}: {method} {path}: response exceeds the {limit}-byte cap")]
    TooLarge {
        tenant: String,
        method: String,
        path: String,
        limit: u64,
    },
    /// The response was not the JSON expected.
    #[error("tenant {tenant}: {method} {path}: {message}")]
    Decode {
        tenant: String,
        method: String,
        path: String,
        message: String,
    },
    /// A pagination or polling declaration is wrong, or the server broke its contract.
    #[error("tenant {tenant}: {what}: {message}")]
    Usage {
        tenant: String,
        what: String,
        message: String,
    },
    /// A polled job reached a failed state.
    #[error("tenant {tenant}: job at {path} ended with {field} = {state}: {message}")]
    JobFailed {
        tenant: String,
        path: String,
        field: String,
        state: String,
        message: String,
    },
    /// A polled job did not finish before its deadline.
    #[error("tenant {tenant}: job at {path} still {state} after {waited:?}")]
    PollTimeout {
        tenant: String,
        path: String,
        state: String,
        waited: std::time::Duration,
    },
}

fn status_text(status: Option<u16>) -> String {
    status
        .map(|s| format!(" with HTTP {s}"))
        .unwrap_or_default()
}

/// Whether an HTTP status is worth retrying (throttling, timeouts and server errors).
pub fn status_is_retryable(status: u16) -> bool {
    matches!(status, 408 | 429) || (500..=599).contains(&status)
}

impl ApiError {
    /// Whether trying the same thing again later can succeed.
    pub fn retryable(&self) -> bool {
        match self {
            ApiError::Status { status, .. } => status_is_retryable(*status),
            ApiError::Transport { .. } | ApiError::PollTimeout { .. } => true,
            ApiError::Auth { retryable, .. } => *retryable,
            ApiError::Config { .. }
            | ApiError::TooLarge { .. }
            | ApiError::Decode { .. }
            | ApiError::Usage { .. }
            | ApiError::JobFailed { .. } => false,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            ApiError::Auth { status, .. } => *status,
            _ => None,
        }
    }

    /// The server's request id, when it sent one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ApiError::Status { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// The failure as scripts see it ([`crate::natives::thrown`]).
    pub fn thrown(&self) -> Thrown {
        Thrown::new(self.to_string())
            .status(self.status())
            .retryable(self.retryable())
            .request_id(self.request_id())
    }

    /// The map scripts catch: `#{status, message, retryable, request_id}` (status and
    /// request_id are `()` when absent).
    pub fn to_rhai_map(&self) -> Map {
        self.thrown().to_map()
    }
}

impl From<ApiError> for Box<EvalAltResult> {
    fn from(err: ApiError) -> Self {
        err.thrown().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_errors_decide_retryability_and_convert_to_a_map() {
        let err = ApiError::Status {
            tenant: "acme".into(),
            method: "GET".into(),
            path: "/api/v2/recording/1".into(),
            status: 503,
            message: "busy".into(),
            request_id: Some("r-1".into()),
        };
        assert!(err.retryable());
        let map = err.to_rhai_map();
        assert_eq!(map["status"].as_int().unwrap(), 503);
        assert!(map["retryable"].as_bool().unwrap());
        assert_eq!(map["request_id"].clone().into_string().unwrap(), "r-1");
        let message = map["message"].clone().into_string().unwrap();
        assert!(message.contains("acme") && message.contains("/api/v2/recording/1"));
        let not_found = ApiError::Status {
            tenant: "acme".into(),
            method: "GET".into(),
            path: "/x".into(),
            status: 404,
            message: "gone".into(),
            request_id: None,
        };
        assert!(!not_found.retryable());
    }

    #[test]
    fn auth_errors_name_the_token_url() {
        let err = ApiError::Auth {
            tenant: "acme".into(),
            token_url: "http://127.0.0.1:9/api/v2/oauth/token".into(),
            status: Some(401),
            message: "invalid_client".into(),
            retryable: false,
        };
        let text = err.to_string();
        assert!(
            text.contains("acme") && text.contains("/api/v2/oauth/token") && text.contains("401")
        );
        assert!(err.to_rhai_map()["request_id"].is_unit());
    }
}
