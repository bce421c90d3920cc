//! `cxpipe sim`: runs the CXone simulator on loopback until Ctrl-C, after printing its
//! base URL and credentials on stdout (`KEY=value` lines and a ready `[tenants.sim]` table
//! for a `cxpipe.toml`, or one JSON object with `--json`).

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use crate::sim::{Faults, SimConfig, SimServer, SizeDistribution};

/// The environment variable the printed `[tenants.sim]` table reads the client secret from.
const SECRET_ENV: &str = "CXPIPE_SIM_CLIENT_SECRET";

/// Fault presets for `--faults`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum FaultLevel {
    /// No injected failures, no rate limits, nothing Processing.
    None,
    /// The demo default: occasional 429s, 5xx, cut streams; short-ish URL expiry.
    Low,
    /// Frequent failures, 20 s tokens, 10 s URLs.
    High,
}

#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// Dataset seed: same seed, same records, media bytes and credentials.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of recordings.
    #[arg(long, default_value_t = 1000)]
    pub recordings: usize,
    /// Number of interactions (defaults to the number of recordings).
    #[arg(long)]
    pub interactions: Option<usize>,
    /// Number of transcripts (defaults to the number of recordings).
    #[arg(long)]
    pub transcripts: Option<usize>,
    /// Fault preset.
    #[arg(long, value_enum, default_value = "low")]
    pub faults: FaultLevel,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Port (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Access-token lifetime, e.g. `90s`, `1h` (overrides the preset).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub token_ttl: Option<Duration>,
    /// Presigned-URL lifetime (overrides the preset).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub url_ttl: Option<Duration>,
    /// Smallest media size in bytes (`combined` channel).
    #[arg(long, default_value_t = 200_000)]
    pub size_min: u64,
    /// Largest media size in bytes.
    #[arg(long, default_value_t = 5_000_000)]
    pub size_max: u64,
    /// JSON merge patch applied to the fault knobs after the preset, e.g.
    /// `'{"error_rate": 0.1, "rate_limits": {"search": {"requests": 50, "per": "1m"}}}'`.
    #[arg(long, value_name = "JSON")]
    pub faults_patch: Option<String>,
    /// Print the connection details as one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl SimArgs {
    fn config(&self) -> SimConfig {
        let mut config = SimConfig {
            seed: self.seed,
            recordings: self.recordings,
            interactions: self.interactions.unwrap_or(self.recordings),
            transcripts: self.transcripts.unwrap_or(self.recordings),
            sizes: SizeDistribution {
                min: self.size_min,
                max: self.size_max,
                log_uniform: true,
            },
            bind: Some(SocketAddr::new(self.bind, self.port)),
            ..SimConfig::default()
        };
        config = match self.faults {
            FaultLevel::None => config.without_faults(),
            FaultLevel::Low => config,
            FaultLevel::High => SimConfig {
                faults: Faults::high(),
                ..config
            },
        };
        if let Some(ttl) = self.token_ttl {
            config.faults.token_ttl = ttl;
        }
        if let Some(ttl) = self.url_ttl {
            config.faults.url_ttl = ttl;
        }
        config
    }
}

pub async fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let patch: Option<serde_json::Value> = args
        .faults_patch
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .context("--faults-patch is not JSON")?;
    let server = SimServer::start(args.config())
        .await
        .context("starting the simulator")?;
    if let Some(patch) = patch {
        server.control(&patch).context("applying --faults-patch")?;
    }
    let creds = server.credentials();
    let snippet = super::sim_run::tenant_snippet(
        server.base_url(),
        &creds.client_id,
        &format!(r#"env = "{SECRET_ENV}""#),
    );
    let details = json!({
        "base_url": server.base_url(),
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
        "access_key_id": creds.access_key_id,
        "access_key_secret": creds.access_key_secret,
        "webhook_secret": creds.webhook_secret,
        "tenant_id": creds.tenant_id(),
        "config_snippet": snippet,
        "client_secret_env": SECRET_ENV,
    });
    if args.json {
        println!("{details}");
    } else if let Some(fields) = details.as_object() {
        for (key, value) in fields.iter().filter(|(k, _)| *k != "config_snippet") {
            println!(
                "{}={}",
                key.to_uppercase(),
                value.as_str().unwrap_or_default()
            );
        }
        println!();
        println!(
            "# For a cxpipe.toml (then: export {SECRET_ENV}={}; cxpipe run SCRIPT --config cxpipe.toml --tenant {}):",
            creds.client_secret,
            super::sim_run::TENANT
        );
        print!("{snippet}");
    }
    eprintln!("cxpipe sim: serving {} (Ctrl-C to stop)", server.base_url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: SimArgs,
    }

    fn config(argv: &[&str]) -> SimConfig {
        let mut full = vec!["sim"];
        full.extend_from_slice(argv);
        Wrapper::parse_from(full).args.config()
    }

    #[test]
    fn presets_and_overrides_shape_the_config() {
        assert_eq!(config(&["--faults", "high"]).faults, Faults::high());
        let quiet = config(&[
            "--faults",
            "none",
            "--token-ttl",
            "90s",
            "--recordings",
            "5",
        ]);
        assert_eq!(quiet.faults.token_ttl, Duration::from_secs(90));
        assert_eq!(
            (quiet.recordings, quiet.interactions, quiet.processing_share),
            (5, 5, 0.0)
        );
        let sized = config(&["--size-min", "10000", "--size-max", "20000", "--port", "0"]);
        assert_eq!((sized.sizes.min, sized.sizes.max), (10_000, 20_000));
    }
}
