//! `cxpipe config check [--config FILE]`: loads the configuration, compiles every
//! pipeline × tenant script and opens every store and tenant client; prints every problem
//! (`file:line:col` first) and exits 1, or lists the pipelines × tenants and exits 0.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::runtime::{Overrides, Runtime};
use crate::terminal::escape;

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration and every pipeline's scripts; report every problem at once.
    Check {
        /// Configuration file (see docs/CONFIG.md).
        #[arg(
            long,
            value_name = "FILE",
            env = "CXPIPE_CONFIG",
            default_value = "cxpipe.toml"
        )]
        config: PathBuf,
    },
}

pub async fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check { config } = args.command;
    let problems = match Runtime::load(Some(&config), Overrides::default()) {
        Err(e) => e.0,
        Ok(runtime) => {
            let problems = runtime.check();
            if problems.is_empty() {
                print_pipelines(&runtime, &config);
                return Ok(ExitCode::SUCCESS);
            }
            problems
        }
    };
    for p in &problems {
        println!("{}", escape(p));
    }
    eprintln!("{}: {} problem(s)", config.display(), problems.len());
    Ok(ExitCode::from(1))
}

/// `PIPELINE  TENANT  SCHEDULE` lines.
fn print_pipelines(runtime: &Runtime, config: &std::path::Path) {
    let pairs = runtime.pipelines();
    println!(
        "{}: ok, {} pipeline × tenant pair(s)",
        config.display(),
        pairs.len()
    );
    for (pipeline, tenant, spec) in pairs {
        let schedule = spec.schedule.as_ref().map_or_else(
            || "on demand".to_string(),
            |s| format!("schedule {:?} ({})", s.cron, s.time_zone),
        );
        let enabled = if spec.enabled { "" } else { " (disabled)" };
        println!(
            "  {}  tenant {}  {}{enabled}",
            escape(&pipeline),
            escape(&tenant),
            escape(&schedule)
        );
    }
}
