//! One OAuth2 token request (form POST) and its answer, shared by the grants. Errors name
//! the tenant and the token URL; any secret the server echoes back is masked.

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::api::auth::cache::Token;
use crate::api::durations::{Clamped, MAX_TOKEN_LIFETIME, MIN_TOKEN_LIFETIME, clamp_seconds};
use crate::api::error::{ApiError, status_is_retryable};
use crate::api::http::HttpClient;
use crate::secret::Secret;

/// Lifetime assumed when the token response has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// Largest token (or discovery) response read.
pub const MAX_TOKEN_RESPONSE: u64 = 1024 * 1024;

/// What to send to a token endpoint.
pub struct TokenRequest<'a> {
    pub tenant: &'a str,
    pub url: &'a str,
    /// Client id and secret for `Authorization: Basic`.
    pub basic: Option<(&'a str, &'a Secret)>,
    /// Form fields (values may be secrets; they are masked in errors).
    pub form: Vec<(&'static str, String)>,
    /// Values to mask if the server echoes them.
    pub secrets: Vec<&'a Secret>,
}

impl TokenRequest<'_> {
    /// Sends the request and reads the token.
    pub async fn send(&self, http: &HttpClient) -> Result<Token, ApiError> {
        let mut request = http
            .client
            .post(self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&self.form);
        if let Some((id, secret)) = self.basic {
            let pair = format!("{id}:{}", secret.expose());
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            request = request.header(reqwest::header::AUTHORIZATION, format!("Basic {encoded}"));
        }
        let mut response = http
            .send(request)
            .await
            .map_err(|stall| self.error(None, stall.describe(), true))?;
        let status = response.status().as_u16();
        let text = http
            .read_to_end(&mut response, MAX_TOKEN_RESPONSE)
            .await
            .map_err(|stall| self.error(Some(status), stall.describe(), true))?
            .ok_or_else(|| {
                self.error(
                    Some(status),
                    format!("token response exceeds {MAX_TOKEN_RESPONSE} bytes"),
                    false,
                )
            })?;
        let text = String::from_utf8_lossy(&text).into_owned();
        if !(200..300).contains(&status) {
            let message = self.mask(&error_message(&text, status));
            return Err(self.error(Some(status), message, status_is_retryable(status)));
        }
        let body: Value = serde_json::from_str(&text).map_err(|e| {
            self.error(
                Some(status),
                format!("token response is not JSON: {e}"),
                false,
            )
        })?;
        let access = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                self.error(
                    Some(status),
                    "token response has no access_token".into(),
                    false,
                )
            })?;
        let lifetime = token_lifetime(self.tenant, body.get("expires_in"));
        tracing::info!(
            tenant = self.tenant,
            token_url = self.url,
            lifetime_s = lifetime.as_secs(),
            "token obtained"
        );
        let refresh = body
            .get("refresh_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(Secret::new);
        Ok(Token {
            access: Secret::new(access),
            lifetime,
            refresh,
        })
    }

    fn error(&self, status: Option<u16>, message: String, retryable: bool) -> ApiError {
        ApiError::Auth {
            tenant: self.tenant.to_string(),
            token_url: self.url.to_string(),
            status,
            message,
            retryable,
        }
    }

    fn mask(&self, text: &str) -> String {
        let mut text = text.to_string();
        let basic_secret = self.basic.map(|(_, s)| s);
        for secret in self.secrets.iter().copied().chain(basic_secret) {
            if !secret.expose().is_empty() {
                text = text.replace(secret.expose(), "***");
            }
        }
        text
    }
}

/// The lifetime an `expires_in` states, always usable: absent or `null` means
/// [`DEFAULT_LIFETIME`]; zero, negative, non-finite or non-numeric values mean
/// [`MIN_TOKEN_LIFETIME`] (short: ask again soon) and longer than [`MAX_TOKEN_LIFETIME`] is
/// cut to it, each with a
/// warning (never a panic: a server must not be able to kill a worker).
pub fn token_lifetime(tenant: &str, expires_in: Option<&Value>) -> Duration {
    let seconds = match expires_in {
        None | Some(Value::Null) => return DEFAULT_LIFETIME,
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    let (lifetime, clamped) = clamp_seconds(
        seconds.unwrap_or(f64::NAN),
        MIN_TOKEN_LIFETIME,
        MAX_TOKEN_LIFETIME,
    );
    if clamped != Clamped::InRange {
        let shown = expires_in.map(Value::to_string).unwrap_or_default();
        let shown: String = shown.chars().take(40).collect();
        tracing::warn!(tenant, expires_in = %shown, lifetime_s = lifetime.as_secs(), "the token endpoint gave an unusable expires_in; assuming a lifetime in range");
    }
    lifetime
}

/// A transport error without the URL (which the caller already names).
pub fn describe_transport(err: &reqwest::Error) -> String {
    let kind = if err.is_connect() {
        "cannot connect"
    } else if err.is_timeout() {
        "timed out"
    } else if err.is_body() || err.is_decode() {
        "connection broke while reading the response"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(err);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

/// The server's explanation, from OAuth (`error`, `error_description`) or common JSON
/// fields, else the start of the body.
pub fn error_message(body: &str, status: u16) -> String {
    let from_json = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        match (field("error"), field("error_description")) {
            (Some(e), Some(d)) => Some(format!("{e}: {d}")),
            (e, d) => e
                .or(d)
                .or_else(|| field("message"))
                .or_else(|| field("Message")),
        }
    });
    let text = from_json.unwrap_or_else(|| body.trim().to_string());
    let text: String = text.chars().take(300).collect();
    if text.is_empty() {
        reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("no explanation")
            .to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn any_expires_in_gives_a_lifetime_in_range() {
        let min = MIN_TOKEN_LIFETIME;
        for (value, want) in [
            (json!(-5), min),
            (json!(0), min),
            (json!(1e300), MAX_TOKEN_LIFETIME),
            (json!("1e30"), MAX_TOKEN_LIFETIME),
            (json!("abc"), min),
            (json!("NaN"), min),
            (json!("-inf"), min),
            (json!([1]), min),
            (json!(3600), Duration::from_secs(3600)),
            (json!("1800"), Duration::from_secs(1800)),
            (Value::Null, DEFAULT_LIFETIME),
        ] {
            assert_eq!(token_lifetime("t", Some(&value)), want, "{value}");
        }
        assert_eq!(token_lifetime("t", None), DEFAULT_LIFETIME);
    }

    #[test]
    fn error_messages_prefer_oauth_fields_then_body_then_reason() {
        assert_eq!(
            error_message(
                r#"{"error":"invalid_client","error_description":"bad secret"}"#,
                401
            ),
            "invalid_client: bad secret"
        );
        assert_eq!(
            error_message(r#"{"message":"slow down"}"#, 429),
            "slow down"
        );
        assert_eq!(error_message("", 503), "Service Unavailable");
        assert_eq!(error_message("plain words", 500), "plain words");
    }
}
