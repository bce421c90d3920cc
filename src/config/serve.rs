//! `[serve]` and `[tenants.T.webhook]` of the configuration: where `cxpipe serve` listens,
//! the bearer token of manual runs, the shutdown grace, and each tenant's webhook secret and
//! headers. Secrets are references (`{ env = "VAR" }` / `{ file = "path" }`), never inline.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::secret::SecretRef;

/// The `[serve]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address of the HTTP server (default `127.0.0.1:8480`).
    #[serde(default = "defaults::listen")]
    pub listen: Spanned<String>,
    /// Bearer token that `POST /pipelines/NAME/run` requires; none: manual runs refused.
    pub token: Option<SecretRef>,
    /// How long items in flight may finish after SIGTERM (default `30s`).
    #[serde(
        default = "defaults::grace",
        with = "crate::api::config::duration_text"
    )]
    pub grace: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: defaults::listen(),
            token: None,
            grace: defaults::grace(),
        }
    }
}

/// A tenant's `[tenants.T.webhook]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// HMAC-SHA256 secret the sender signs `timestamp.body` with.
    pub secret: SecretRef,
    /// Header carrying the hex signature (default `X-Nice-Signature`, as CXone and the simulator send it).
    #[serde(default = "defaults::signature_header")]
    pub signature_header: String,
    /// Header carrying the Unix timestamp that was signed (default `Nice-Request-Timestamp`).
    #[serde(default = "defaults::timestamp_header")]
    pub timestamp_header: String,
    /// How far the timestamp may be from now (default `300s`).
    #[serde(
        default = "defaults::tolerance",
        with = "crate::api::config::duration_text"
    )]
    pub tolerance: Duration,
    /// Largest body accepted, in bytes (default 1 MiB).
    #[serde(default = "defaults::max_body")]
    pub max_body: u64,
}

mod defaults {
    use std::time::Duration;

    use toml::Spanned;

    pub fn listen() -> Spanned<String> {
        Spanned::new(0..0, "127.0.0.1:8480".to_string())
    }
    pub fn grace() -> Duration {
        Duration::from_secs(30)
    }
    pub fn signature_header() -> String {
        "X-Nice-Signature".into()
    }
    pub fn timestamp_header() -> String {
        "Nice-Request-Timestamp".into()
    }
    pub fn tolerance() -> Duration {
        Duration::from_secs(300)
    }
    pub fn max_body() -> u64 {
        1024 * 1024
    }
}
