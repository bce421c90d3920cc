//! `cxpipe sim` (placeholder until its issue lands).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct SimArgs {}

pub async fn run(_args: SimArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("cxpipe sim is not built yet")
}
