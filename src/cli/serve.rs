//! `cxpipe serve`: runs every pipeline × tenant of a config as a service (schedules,
//! webhooks, manual runs, hot reload, status and metrics over HTTP) until SIGTERM or
//! Ctrl-C, then stops cleanly (see docs/SERVE.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::ledger_args::LedgerArgs;
use super::run::Signals;
use crate::serve::daemon::Daemon;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file: tenants, stores, keys, pipelines, [serve] (see docs/CONFIG.md).
    #[arg(
        long,
        value_name = "FILE",
        env = "CXPIPE_CONFIG",
        default_value = "cxpipe.toml"
    )]
    pub config: PathBuf,
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// Address to listen on, over `[serve] listen` (port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::watch()?;
    let ledger = args.ledger.open().await?;
    let daemon = Daemon::start(&args.config, ledger, args.listen)
        .await
        .with_context(|| format!("starting cxpipe serve with {}", args.config.display()))?;
    // The one line scripts and people wait for: where to reach it.
    println!("cxpipe serve listening on http://{}/", daemon.addr());
    let (name, _) = signals.next().await;
    tracing::warn!("{name} received: no new runs; items in flight get their grace");
    tokio::select! {
        _ = daemon.shutdown(name) => {}
        (second, _) = signals.next() => {
            tracing::error!("{second} received again: exiting at once; leased items are taken over by the next start");
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}
