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
    /// Share each pipeline's items with other `cxpipe serve` nodes on the same ledger
    /// (docs/SCALE.md): `auto` (the default: on with a PostgreSQL ledger), `on`, `off`.
    #[serde(default)]
    pub cluster: ClusterMode,
    /// How long a node's claim on an item lasts without renewal (default `30s`): a node
    /// that dies has its items taken over this long after its last heartbeat.
    #[serde(
        default = "defaults::lease",
        with = "crate::api::config::duration_text"
    )]
    pub lease: Duration,
    /// How often a node renews its leases and proves it is alive (default `5s`; at most a
    /// third of `lease`).
    #[serde(
        default = "defaults::heartbeat",
        with = "crate::api::config::duration_text"
    )]
    pub heartbeat: Duration,
    /// Items a node claims per ledger round trip, at most (default 16).
    #[serde(default = "defaults::claim_batch")]
    pub claim_batch: usize,
}

/// `[serve] cluster`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    /// On when the ledger is PostgreSQL.
    #[default]
    Auto,
    On,
    Off,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: defaults::listen(),
            token: None,
            grace: defaults::grace(),
            cluster: ClusterMode::Auto,
            lease: defaults::lease(),
            heartbeat: defaults::heartbeat(),
            claim_batch: defaults::claim_batch(),
        }
    }
}

impl ServeConfig {
    /// The cluster settings as runs take them, or why they cannot work.
    pub fn cluster_options(&self) -> Result<crate::runner::cluster::ClusterOptions, String> {
        if self.lease < Duration::from_secs(1) {
            return Err("[serve] lease must be at least 1s".into());
        }
        if self.heartbeat.is_zero() || self.heartbeat * 3 > self.lease {
            return Err(format!(
                "[serve] heartbeat ({}) must be positive and at most a third of lease ({}), \
                 so a live node renews its leases before they expire",
                humantime::format_duration(self.heartbeat),
                humantime::format_duration(self.lease)
            ));
        }
        if self.claim_batch == 0 || self.claim_batch > 1000 {
            return Err("[serve] claim_batch must be between 1 and 1000".into());
        }
        Ok(crate::runner::cluster::ClusterOptions {
            lease: self.lease,
            heartbeat: self.heartbeat,
            claim_batch: self.claim_batch,
            ..Default::default()
        })
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
    pub fn lease() -> Duration {
        Duration::from_secs(30)
    }
    pub fn heartbeat() -> Duration {
        Duration::from_secs(5)
    }
    pub fn claim_batch() -> usize {
        16
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

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(text: &str) -> ServeConfig {
        toml::from_str(text).expect("a [serve] table")
    }

    #[test]
    fn cluster_settings_default_to_auto_and_are_checked() {
        let default = serve("");
        assert_eq!(default.cluster, ClusterMode::Auto);
        let opts = default.cluster_options().unwrap();
        assert_eq!(
            (opts.lease, opts.heartbeat, opts.claim_batch),
            (Duration::from_secs(30), Duration::from_secs(5), 16)
        );
        let tuned = serve("cluster = \"on\"\nlease = \"6s\"\nheartbeat = \"2s\"\nclaim_batch = 4");
        assert_eq!(tuned.cluster, ClusterMode::On);
        assert_eq!(tuned.cluster_options().unwrap().claim_batch, 4);
        let slow = serve("lease = \"6s\"\nheartbeat = \"3s\"");
        let err = slow.cluster_options().unwrap_err();
        assert!(
            err.contains("heartbeat (3s)") && err.contains("lease (6s)"),
            "{err}"
        );
        assert!(serve("claim_batch = 0").cluster_options().is_err());
        assert!(toml::from_str::<ServeConfig>("cluster = \"maybe\"").is_err());
    }
}
