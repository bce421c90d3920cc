//! Authentication of one tenant: the configured grant ([`Grant`]) behind a shared
//! [`TokenCache`]. Secrets are resolved once, here, and only leave in token requests.

pub mod cache;
mod client_credentials;
mod password;
mod token_request;

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

pub use cache::{Token, TokenCache};
pub use client_credentials::ClientCredentials;
pub use password::{PasswordGrant, jwt_claim};
pub use token_request::{describe_transport, error_message};

use crate::api::clock::Clock;
use crate::api::config::AuthConfig;
use crate::api::error::ApiError;
use crate::api::http::HttpClient;
use crate::secret::{Secret, SecretRef};

/// The ways to get a token.
pub enum Grant {
    ClientCredentials(ClientCredentials),
    Password(PasswordGrant),
    /// A fixed token: never refreshed.
    Bearer(Secret),
}

/// A tenant's grant and its token cache.
pub struct Authenticator {
    tenant: String,
    grant: Grant,
    cache: Arc<TokenCache>,
}

impl Authenticator {
    /// Resolves secrets and the token URL; `base_url` anchors a relative `token_url`. Every
    /// problem is reported at once (`; `-separated), naming secrets by source, never value.
    pub fn new(
        tenant: &str,
        config: &AuthConfig,
        base_url: Option<&str>,
        config_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ApiError> {
        let mut problems = Vec::new();
        let mut resolve = |what: &str, r: &SecretRef| {
            r.resolve(config_dir).unwrap_or_else(|e| {
                problems.push(format!("auth.{what} ({}): {e}", r.describe()));
                Secret::new("")
            })
        };
        let grant = match config {
            AuthConfig::ClientCredentials {
                token_url,
                client_id,
                client_secret,
                credentials_in,
                scope,
            } => {
                let client_secret = resolve("client_secret", client_secret);
                let token_url = absolute_url(token_url, base_url).unwrap_or_else(|e| {
                    problems.push(format!("auth.token_url: {e}"));
                    String::new()
                });
                Grant::ClientCredentials(ClientCredentials {
                    token_url,
                    client_id: client_id.clone(),
                    client_secret,
                    credentials_in: *credentials_in,
                    scope: scope.clone(),
                })
            }
            AuthConfig::Password {
                issuer,
                client_id,
                client_secret,
                username,
                password,
                token_url,
                scope,
            } => Grant::Password(PasswordGrant {
                issuer: issuer.trim_end_matches('/').to_string(),
                client_id: client_id.clone(),
                client_secret: resolve("client_secret", client_secret),
                username: resolve("username", username),
                password: resolve("password", password),
                token_url: token_url.clone(),
                scope: scope.clone(),
                discovered_token_url: OnceCell::new(),
                refresh_token: std::sync::Mutex::new(None),
            }),
            AuthConfig::Bearer { token } => Grant::Bearer(resolve("token", token)),
        };
        if !problems.is_empty() {
            return Err(ApiError::Config {
                tenant: tenant.to_string(),
                message: problems.join("; "),
            });
        }
        let cache = TokenCache::shared(&cache_key(&grant), clock);
        Ok(Authenticator {
            tenant: tenant.to_string(),
            grant,
            cache,
        })
    }

    /// A token to send and its generation (pass it to [`Authenticator::rejected`]).
    pub async fn bearer(&self, http: &HttpClient) -> Result<(Secret, u64), ApiError> {
        match &self.grant {
            Grant::Bearer(token) => Ok((token.clone(), 0)),
            Grant::ClientCredentials(grant) => {
                self.cache.get(|| grant.fetch(&self.tenant, http)).await
            }
            Grant::Password(grant) => self.cache.get(|| grant.fetch(&self.tenant, http)).await,
        }
    }

    /// The server answered 401 to the token of `generation`. Returns whether a refreshed
    /// token can help (false for a static bearer token).
    pub async fn rejected(&self, generation: u64) -> bool {
        if matches!(self.grant, Grant::Bearer(_)) {
            return false;
        }
        self.cache.invalidate(generation).await;
        true
    }

    /// Token requests made through this tenant's cache.
    pub fn token_requests(&self) -> u64 {
        self.cache.requests()
    }

    /// The API base discovered from the platform (password grant only).
    pub async fn discover_base(&self, http: &HttpClient) -> Result<String, ApiError> {
        match &self.grant {
            Grant::Password(grant) => {
                let (token, _) = self.bearer(http).await?;
                grant.api_base(&self.tenant, http, &token).await
            }
            _ => Err(ApiError::Config {
                tenant: self.tenant.clone(),
                message: "base_url is required unless auth.kind = \"password\"".into(),
            }),
        }
    }
}

/// `url` as is when absolute, else joined to `base`.
pub fn absolute_url(url: &str, base: Option<&str>) -> Result<String, String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(url.to_string());
    }
    let base = base.ok_or_else(|| format!("{url} is relative but the tenant has no base_url"))?;
    Ok(format!(
        "{}/{}",
        base.trim_end_matches('/'),
        url.trim_start_matches('/')
    ))
}

/// Endpoint + client id + SHA-256 of the secrets: rotating a secret starts a new cache.
fn cache_key(grant: &Grant) -> String {
    let mut hash = Sha256::new();
    let (endpoint, client) = match grant {
        Grant::ClientCredentials(g) => {
            hash.update(g.client_secret.expose());
            hash.update([0]);
            hash.update(g.scope.as_deref().unwrap_or(""));
            (g.token_url.as_str(), g.client_id.as_str())
        }
        Grant::Password(g) => {
            for s in [&g.client_secret, &g.username, &g.password] {
                hash.update(s.expose());
                hash.update([0]);
            }
            (g.issuer.as_str(), g.client_id.as_str())
        }
        Grant::Bearer(t) => {
            hash.update(t.expose());
            ("bearer", "")
        }
    };
    format!("{endpoint}|{client}|{}", hex::encode(hash.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_token_urls_join_the_base() {
        assert_eq!(
            absolute_url("/api/v2/oauth/token", Some("http://h:1/")).unwrap(),
            "http://h:1/api/v2/oauth/token"
        );
        assert_eq!(
            absolute_url("https://idp/token", None).unwrap(),
            "https://idp/token"
        );
        assert!(absolute_url("/token", None).is_err());
    }

    #[test]
    fn cache_key_changes_with_the_secret_and_hides_it() {
        let grant = |secret: &str| {
            Grant::ClientCredentials(ClientCredentials {
                token_url: "http://h/token".into(),
                client_id: "id".into(),
                client_secret: Secret::new(secret),
                credentials_in: Default::default(),
                scope: None,
            })
        };
        let (a, b) = (cache_key(&grant("hunter2")), cache_key(&grant("hunter3")));
        assert_ne!(a, b);
        assert!(a.starts_with("http://h/token|id|") && !a.contains("hunter2"));
    }
}
