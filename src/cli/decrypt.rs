//! `cxpipe decrypt` (placeholder until its issue lands).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct DecryptArgs {}

pub async fn run(_args: DecryptArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("cxpipe decrypt is not built yet")
}
