//! `--state DIR` / `--ledger URL`, shared by the subcommands that open the ledger.
//!
//! Both are global: `cxpipe items --state DIR ls` and `cxpipe items ls --state DIR` mean the
//! same folder. `--state` always names the ledger folder; the item-state filter of `items`
//! is `--status`.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::ledger::{Ledger, redact_url};

#[derive(Debug, Clone, clap::Args)]
pub struct LedgerArgs {
    /// Folder holding the SQLite ledger (`ledger.sqlite`).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = ".cxpipe",
        env = "CXPIPE_STATE"
    )]
    pub state: PathBuf,
    /// Ledger URL instead of --state: `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`
    /// (the password from the URL, PGPASSWORD or ~/.pgpass).
    #[arg(long, global = true, value_name = "URL", env = "CXPIPE_LEDGER")]
    pub ledger: Option<String>,
}

impl LedgerArgs {
    /// Opens the ledger, creating it if needed (for runs).
    pub async fn open(&self) -> anyhow::Result<Ledger> {
        match &self.ledger {
            Some(url) => Ledger::open_url(url)
                .await
                .with_context(|| format!("opening ledger {}", redact_url(url))),
            None => Ledger::open_dir(&self.state)
                .await
                .with_context(|| format!("opening ledger in {}", self.state.display())),
        }
    }

    /// Opens an existing ledger; creates nothing, and says how to make one when there is
    /// none (for commands that only look at or re-queue items).
    pub async fn open_existing(&self) -> anyhow::Result<Ledger> {
        match &self.ledger {
            Some(url) => Ledger::open_existing_url(url)
                .await
                .with_context(|| format!("opening ledger {}", redact_url(url))),
            None => Ledger::open_existing_dir(&self.state)
                .await
                .with_context(|| format!("opening ledger in {}", self.state.display())),
        }
    }
}
