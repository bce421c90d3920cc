//! The OAuth2 `client_credentials` grant of the seed guides: client id and secret in a
//! Basic header or in the form body, optional scope.

use crate::api::auth::cache::Token;
use crate::api::auth::token_request::TokenRequest;
use crate::api::config::CredentialsIn;
use crate::api::error::ApiError;
use crate::api::http::HttpClient;
use crate::secret::Secret;

/// A configured client-credentials grant.
pub struct ClientCredentials {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub credentials_in: CredentialsIn,
    pub scope: Option<String>,
}

impl ClientCredentials {
    /// Requests a new token.
    pub async fn fetch(&self, tenant: &str, http: &HttpClient) -> Result<Token, ApiError> {
        let mut form = vec![("grant_type", "client_credentials".to_string())];
        let mut basic = None;
        match self.credentials_in {
            CredentialsIn::Basic => basic = Some((self.client_id.as_str(), &self.client_secret)),
            CredentialsIn::Body => {
                form.push(("client_id", self.client_id.clone()));
                form.push(("client_secret", self.client_secret.expose().to_string()));
            }
        }
        if let Some(scope) = &self.scope {
            form.push(("scope", scope.clone()));
        }
        TokenRequest {
            tenant,
            url: &self.token_url,
            basic,
            form,
            secrets: vec![&self.client_secret],
        }
        .send(http)
        .await
    }
}
