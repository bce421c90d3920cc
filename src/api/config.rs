//! The `[tenants.NAME]` configuration table: base URL, auth, timeouts, retries and rate
//! budgets. Parsed as plain data here; [`crate::api::Api::new`] validates and builds it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::secret::SecretRef;

/// One tenant: where its API lives and how cxpipe talks to it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Base URL every API path is joined to, e.g. `https://api-c32.nice-incontact.com/inContactAPI`.
    /// Optional for `kind = "password"`, where `cxone-configuration` discovery supplies it.
    #[serde(default)]
    pub base_url: Option<String>,
    /// How requests are authenticated.
    pub auth: AuthConfig,
    /// Longest wait for a TCP/TLS connection to open (default `10s`).
    #[serde(default = "defaults::connect_timeout", with = "duration_text")]
    pub connect_timeout: Duration,
    /// Longest silence while reading a response (default `60s`); there is no total timeout.
    #[serde(default = "defaults::read_timeout", with = "duration_text")]
    pub read_timeout: Duration,
    /// Longest wait for response headers once a request is sent, for API and token calls
    /// (default `20s`); a stalled attempt fails and is retried like a read error.
    #[serde(default = "defaults::header_timeout", with = "duration_text")]
    pub header_timeout: Duration,
    /// A response body must bring at least this many bytes per `min_progress_window`
    /// (default 1024), or the attempt fails as stalled: a server dripping a byte a second
    /// cannot hold a worker.
    #[serde(default = "defaults::min_progress_bytes")]
    pub min_progress_bytes: u64,
    /// The window `min_progress_bytes` is counted over (default `10s`).
    #[serde(default = "defaults::min_progress_window", with = "duration_text")]
    pub min_progress_window: Duration,
    /// Retries after the first attempt on 429, 5xx, connect and read errors (default 6).
    #[serde(default = "defaults::max_retries")]
    pub max_retries: u32,
    /// First retry delay; doubles per attempt, jittered (default `500ms`).
    #[serde(default = "defaults::backoff_base", with = "duration_text")]
    pub backoff_base: Duration,
    /// Longest retry delay (default `30s`).
    #[serde(default = "defaults::backoff_max", with = "duration_text")]
    pub backoff_max: Duration,
    /// Largest JSON response accepted, in bytes (default 16 MiB).
    #[serde(default = "defaults::max_response_bytes")]
    pub max_response_bytes: u64,
    /// Request budgets per endpoint family.
    #[serde(default)]
    pub rate_limits: RateLimitsConfig,
}

/// The ways cxpipe can obtain a bearer token.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// OAuth2 `client_credentials` grant (the seed guides' flavour).
    ClientCredentials {
        /// Token endpoint, relative to `base_url` or absolute.
        token_url: String,
        /// OAuth client id (not secret).
        client_id: String,
        /// OAuth client secret.
        client_secret: SecretRef,
        /// Where the credentials go: `basic` (Authorization header, default) or `body`.
        #[serde(default)]
        credentials_in: CredentialsIn,
        /// Optional space-separated scopes.
        #[serde(default)]
        scope: Option<String>,
    },
    /// OAuth2 `password` grant with OIDC discovery (the real platform).
    Password {
        /// OIDC issuer, e.g. `https://cxone.niceincontact.com`.
        issuer: String,
        /// Client id issued at app registration.
        client_id: String,
        /// Client secret issued at app registration (sent as `client_secret_basic`).
        client_secret: SecretRef,
        /// Access key id (the grant's username).
        username: SecretRef,
        /// Access key secret (the grant's password).
        password: SecretRef,
        /// Token endpoint override; by default read from `/.well-known/openid-configuration`.
        #[serde(default)]
        token_url: Option<String>,
        /// Optional space-separated scopes.
        #[serde(default)]
        scope: Option<String>,
    },
    /// A fixed bearer token (no refresh; a 401 is final).
    Bearer {
        /// The token.
        token: SecretRef,
    },
}

/// Where client credentials are sent in a token request.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CredentialsIn {
    /// `Authorization: Basic base64(id:secret)`.
    #[default]
    Basic,
    /// `client_id` and `client_secret` form fields.
    Body,
}

/// Rate budgets: a preset, then families that add to or replace the preset's.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// `cxone-real` (documented limits of the real platform) or `cxone-seeds` (the seed
    /// guides' 50 requests per minute on recording search).
    #[serde(default)]
    pub preset: Option<Preset>,
    /// Families by name. A family named `default` (no `paths`) covers every other path;
    /// without one, other paths form families limited by the server's 429s (which learn
    /// their rate when `adaptive` is true).
    #[serde(default)]
    pub families: BTreeMap<String, FamilyConfig>,
    /// Whether families nobody configured learn their rate from the server's 429s and
    /// rate-limit headers (default false: they are limited by 429 pauses only). Not on by
    /// default yet: a server that sends 429s at random (the simulator's fault injection)
    /// teaches it a rate below what pauses alone allow.
    #[serde(default = "defaults::adaptive")]
    pub adaptive: bool,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        RateLimitsConfig {
            preset: None,
            families: BTreeMap::new(),
            adaptive: defaults::adaptive(),
        }
    }
}

/// Named sets of families.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Limits NICE documents for the real API (media playback, media download, data extraction).
    CxoneReal,
    /// The limits the seed guides describe (recording search, 50 per minute).
    CxoneSeeds,
}

/// One endpoint family: the paths it covers and its budget.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FamilyConfig {
    /// Path prefixes (after the base URL's path); `*` matches one segment, e.g.
    /// `/api/v2/recording/*/download`.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Requests allowed per `per`.
    pub requests: u32,
    /// The window the budget is stated over, e.g. `1m`, `5m`.
    #[serde(with = "duration_text")]
    pub per: Duration,
    /// Requests that may go back to back before spacing applies (default 1: evenly spaced,
    /// which never trips a fixed or sliding window on the server).
    #[serde(default)]
    pub burst: Option<u32>,
}

mod defaults {
    use std::time::Duration;

    pub fn connect_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn read_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn header_timeout() -> Duration {
        Duration::from_secs(20)
    }
    pub fn min_progress_bytes() -> u64 {
        1024
    }
    pub fn min_progress_window() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_retries() -> u32 {
        6
    }
    pub fn backoff_base() -> Duration {
        Duration::from_millis(500)
    }
    pub fn backoff_max() -> Duration {
        Duration::from_secs(30)
    }
    pub fn max_response_bytes() -> u64 {
        16 * 1024 * 1024
    }
    pub fn adaptive() -> bool {
        false
    }
}

/// Durations written as text (`"10s"`, `"1m"`, `"250ms"`).
pub(crate) mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TenantConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn client_credentials_with_defaults() {
        let c = parse(
            r#"
            base_url = "http://127.0.0.1:1"
            [auth]
            kind = "client_credentials"
            token_url = "/api/v2/oauth/token"
            client_id = "abc"
            client_secret = { env = "X" }
            "#,
        )
        .unwrap();
        assert_eq!(c.read_timeout, Duration::from_secs(60));
        assert_eq!(c.header_timeout, Duration::from_secs(20));
        assert_eq!(
            (c.min_progress_bytes, c.min_progress_window),
            (1024, Duration::from_secs(10))
        );
        assert_eq!(c.max_retries, 6);
        match c.auth {
            AuthConfig::ClientCredentials { credentials_in, .. } => {
                assert_eq!(credentials_in, CredentialsIn::Basic)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn families_and_preset() {
        let c = parse(
            r#"
            base_url = "http://x"
            auth = { kind = "bearer", token = { file = "t" } }
            [rate_limits]
            preset = "cxone-real"
            families = { search = { paths = ["/api/v2/recording/search"], requests = 50, per = "1m" } }
            "#,
        )
        .unwrap();
        assert_eq!(c.rate_limits.preset, Some(Preset::CxoneReal));
        let f = &c.rate_limits.families["search"];
        assert_eq!((f.requests, f.per), (50, Duration::from_secs(60)));
    }

    #[test]
    fn unknown_fields_and_bad_durations_are_rejected() {
        let unknown = parse(
            r#"
            base_url = "http://x"
            colour = "blue"
            auth = { kind = "bearer", token = { env = "T" } }
            "#,
        );
        assert!(unknown.unwrap_err().to_string().contains("colour"));
        let auth_typo = parse(
            r#"
            auth = { kind = "bearer", token = { env = "T" }, scope = "x" }
            "#,
        );
        assert!(auth_typo.is_err());
        let bad = parse(
            r#"
            read_timeout = "soon"
            auth = { kind = "bearer", token = { env = "T" } }
            "#,
        );
        assert!(bad.unwrap_err().to_string().contains("soon"));
    }
}
