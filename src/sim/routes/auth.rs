//! Token endpoints (`/api/v1/oauth/token`, `/api/v2/oauth/token`, `/auth/token`, the legacy
//! access-key endpoint) and discovery (`openid-configuration`, `cxone-configuration`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::sim::state::SimState;
use crate::sim::stats::bump;

pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/api/v1/oauth/token", post(token))
        .route("/api/v2/oauth/token", post(token))
        .route("/auth/token", post(token))
        .route(
            "/authentication/v1/token/access-key",
            post(access_key_token),
        )
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/.well-known/cxone-configuration", get(cxone_configuration))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// Client id and secret from HTTP Basic, else from the form body.
fn client_of(headers: &HeaderMap, form: &HashMap<String, String>) -> Option<(String, String)> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(id, secret)| (id.to_string(), secret.to_string()))
        });
    basic.or_else(|| {
        Some((
            form.get("client_id")?.clone(),
            form.get("client_secret")?.clone(),
        ))
    })
}

fn issue(state: &SimState, subject: &str, with_refresh: bool, scope: Option<&String>) -> Response {
    let faults = state.faults();
    let issued = state.tokens.issue(
        faults.token_ttl,
        &state.credentials.tenant_id(),
        subject,
        Instant::now(),
    );
    bump(&state.stats.tokens_issued);
    let mut body = json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
    });
    if let Some(scope) = scope {
        body["scope"] = json!(scope);
    }
    if with_refresh {
        body["refresh_token"] = json!(issued.refresh_token);
        body["id_token"] = json!(format!("{}.id", issued.access_token));
    }
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        "no-store".parse().expect("static header"),
    );
    response
}

/// `POST …/token` with `grant_type` `client_credentials`, `password` or `refresh_token`.
async fn token(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let creds = &state.credentials;
    let Some((client_id, client_secret)) = client_of(&headers, &form) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication is missing",
        );
    };
    if client_id != creds.client_id || client_secret != creds.client_secret {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    }
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => issue(&state, &client_id, false, form.get("scope")),
        Some("password") => {
            let user_ok = form.get("username") == Some(&creds.access_key_id)
                && form.get("password") == Some(&creds.access_key_secret);
            if user_ok {
                issue(&state, &creds.access_key_id, true, form.get("scope"))
            } else {
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "wrong access key id or secret",
                )
            }
        }
        Some("refresh_token") => {
            let token = form
                .get("refresh_token")
                .map(String::as_str)
                .unwrap_or_default();
            if state.tokens.redeem_refresh(token, Instant::now()) {
                issue(&state, &creds.access_key_id, true, None)
            } else {
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "refresh token unknown, used or expired",
                )
            }
        }
        Some(other) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("grant_type {other} is not supported"),
        ),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is required",
        ),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccessKeyRequest {
    access_key_id: String,
    access_key_secret: String,
}

/// Legacy `POST /authentication/v1/token/access-key` with `{accessKeyId, accessKeySecret}`.
async fn access_key_token(
    State(state): State<Arc<SimState>>,
    Json(body): Json<AccessKeyRequest>,
) -> Response {
    let creds = &state.credentials;
    if body.access_key_id != creds.access_key_id
        || body.access_key_secret != creds.access_key_secret
    {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "wrong access key id or secret",
        );
    }
    issue(&state, &creds.access_key_id, true, None)
}

async fn openid_configuration(State(state): State<Arc<SimState>>) -> Json<Value> {
    let base = state.base_url();
    Json(json!({
        "issuer": base,
        "token_endpoint": format!("{base}/auth/token"),
        "authorization_endpoint": format!("{base}/auth/authorize"),
        "jwks_uri": format!("{base}/auth/jwks"),
        "grant_types_supported": ["password", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": ["code", "token"],
    }))
}

#[derive(Deserialize)]
struct TenantQuery {
    #[serde(rename = "tenantId")]
    tenant_id: Option<String>,
}

async fn cxone_configuration(
    State(state): State<Arc<SimState>>,
    Query(query): Query<TenantQuery>,
) -> Response {
    let tenant = state.credentials.tenant_id();
    if query.tenant_id.as_deref() != Some(tenant.as_str()) {
        let message = "unknown tenantId (read it from the access token claims)";
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "NotFound", "message": message })),
        )
            .into_response();
    }
    let base = state.base_url();
    Json(json!({
        "tenantId": tenant,
        "api_endpoint": base,
        "area": "sim",
        "domain": "127.0.0.1",
        "ui_endpoint": base,
        "auth_endpoint": base,
    }))
    .into_response()
}
