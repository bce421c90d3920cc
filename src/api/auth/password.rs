//! The real platform's OAuth2 `password` grant (access key id and secret as username and
//! password, client id and secret as `client_secret_basic`), with OIDC discovery of the
//! token endpoint and `cxone-configuration` discovery of the API base URL. Later tokens
//! come from the `refresh_token` grant while the platform accepts it, else the password
//! grant again.

use base64::Engine as _;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::api::auth::cache::Token;
use crate::api::auth::token_request::{MAX_TOKEN_RESPONSE, TokenRequest, error_message};
use crate::api::error::ApiError;
use crate::api::http::HttpClient;
use crate::secret::Secret;

/// A configured password grant.
pub struct PasswordGrant {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub username: Secret,
    pub password: Secret,
    pub token_url: Option<String>,
    pub scope: Option<String>,
    pub discovered_token_url: OnceCell<String>,
    /// The last refresh token issued (single use).
    pub refresh_token: std::sync::Mutex<Option<Secret>>,
}

impl PasswordGrant {
    /// Requests a new token (discovering the token endpoint the first time): by the
    /// refresh token when there is one, falling back to the password grant.
    pub async fn fetch(&self, tenant: &str, http: &HttpClient) -> Result<Token, ApiError> {
        let url = self.token_endpoint(tenant, http).await?;
        let refresh = self.refresh_token.lock().expect("refresh token").take();
        if let Some(refresh) = refresh {
            let request = TokenRequest {
                tenant,
                url,
                basic: Some((&self.client_id, &self.client_secret)),
                form: vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", refresh.expose().to_string()),
                ],
                secrets: vec![&self.client_secret, &refresh],
            };
            match request.send(http).await {
                Ok(token) => return Ok(self.keep_refresh(token)),
                Err(err) => {
                    tracing::info!(tenant, error = %err, "refresh token not accepted; using the password grant");
                }
            }
        }
        let mut form = vec![
            ("grant_type", "password".to_string()),
            ("username", self.username.expose().to_string()),
            ("password", self.password.expose().to_string()),
        ];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope.clone()));
        }
        let token = TokenRequest {
            tenant,
            url,
            basic: Some((&self.client_id, &self.client_secret)),
            form,
            secrets: vec![&self.client_secret, &self.username, &self.password],
        }
        .send(http)
        .await?;
        Ok(self.keep_refresh(token))
    }

    fn keep_refresh(&self, mut token: Token) -> Token {
        *self.refresh_token.lock().expect("refresh token") = token.refresh.take();
        token
    }

    async fn token_endpoint(&self, tenant: &str, http: &HttpClient) -> Result<&String, ApiError> {
        self.discovered_token_url
            .get_or_try_init(|| async {
                if let Some(url) = &self.token_url {
                    return Ok(url.clone());
                }
                let url = format!("{}/.well-known/openid-configuration", self.issuer);
                let doc = get_json(tenant, http, &url).await?;
                string_field(tenant, &url, &doc, "token_endpoint")
            })
            .await
    }

    /// The API base URL for the tenant the `access_token` belongs to, from
    /// `{issuer}/.well-known/cxone-configuration?tenantId=…`.
    pub async fn api_base(
        &self,
        tenant: &str,
        http: &HttpClient,
        access_token: &Secret,
    ) -> Result<String, ApiError> {
        let tenant_id =
            jwt_claim(access_token.expose(), "tenantId").ok_or_else(|| ApiError::Config {
                tenant: tenant.to_string(),
                message: "the access token carries no tenantId claim; set base_url for this tenant"
                    .into(),
            })?;
        let url = format!("{}/.well-known/cxone-configuration", self.issuer);
        let full = reqwest::Url::parse_with_params(&url, [("tenantId", tenant_id.as_str())])
            .map_err(|e| config_error(tenant, format!("bad issuer URL {url}: {e}")))?;
        let doc = get_json(tenant, http, full.as_str()).await?;
        if let Some(endpoint) = doc.get("api_endpoint").and_then(Value::as_str) {
            return Ok(endpoint.trim_end_matches('/').to_string());
        }
        let area = string_field(tenant, &url, &doc, "area")?;
        let domain = string_field(tenant, &url, &doc, "domain")?;
        Ok(format!("https://api-{area}.{domain}"))
    }
}

fn config_error(tenant: &str, message: String) -> ApiError {
    ApiError::Config {
        tenant: tenant.to_string(),
        message,
    }
}

async fn get_json(tenant: &str, http: &HttpClient, url: &str) -> Result<Value, ApiError> {
    let transport = |message: String| ApiError::Transport {
        tenant: tenant.to_string(),
        method: "GET".into(),
        path: url.to_string(),
        message,
    };
    let mut response = http
        .send(http.client.get(url))
        .await
        .map_err(|stall| transport(stall.describe()))?;
    let status = response.status().as_u16();
    let text = http
        .read_to_end(&mut response, MAX_TOKEN_RESPONSE)
        .await
        .map_err(|stall| transport(stall.describe()))?
        .ok_or_else(|| transport(format!("response exceeds {MAX_TOKEN_RESPONSE} bytes")))?;
    let text = String::from_utf8_lossy(&text).into_owned();
    if !(200..300).contains(&status) {
        return Err(ApiError::Status {
            tenant: tenant.to_string(),
            method: "GET".into(),
            path: url.to_string(),
            status,
            message: error_message(&text, status),
            request_id: None,
        });
    }
    serde_json::from_str(&text).map_err(|e| ApiError::Decode {
        tenant: tenant.to_string(),
        method: "GET".into(),
        path: url.to_string(),
        message: format!("discovery document is not JSON: {e}"),
    })
}

fn string_field(tenant: &str, url: &str, doc: &Value, field: &str) -> Result<String, ApiError> {
    doc.get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ApiError::Decode {
            tenant: tenant.to_string(),
            method: "GET".into(),
            path: url.to_string(),
            message: format!("discovery document has no {field}"),
        })
}

/// A string claim of a JWT's payload (unverified: only used to find the tenant's API).
pub fn jwt_claim(token: &str, claim: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    match claims.get(claim)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_claims_from_a_jwt_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"tenantId":"11EA-ACME","sub":"x"}"#);
        let token = format!("eyJhbGciOiJub25lIn0.{payload}.sig");
        assert_eq!(jwt_claim(&token, "tenantId").as_deref(), Some("11EA-ACME"));
        assert_eq!(jwt_claim(&token, "missing"), None);
        assert_eq!(jwt_claim("opaque-token", "tenantId"), None);
    }
}
