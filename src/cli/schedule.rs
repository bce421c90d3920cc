//! `cxpipe schedule ls`: every scheduled pipeline × tenant of a config with its next fire
//! times, as `cxpipe serve` would fire them.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::runtime::{Overrides, Runtime};
use crate::serve::schedule::describe;
use crate::terminal::escape;

#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    #[command(subcommand)]
    pub command: ScheduleCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// List the scheduled pipelines × tenants and their next fire times.
    Ls {
        /// Configuration file (see docs/CONFIG.md).
        #[arg(
            long,
            value_name = "FILE",
            env = "CXPIPE_CONFIG",
            default_value = "cxpipe.toml"
        )]
        config: PathBuf,
        /// How many next fires to show per entry.
        #[arg(long, default_value_t = 3)]
        next: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(args: ScheduleArgs) -> anyhow::Result<ExitCode> {
    let ScheduleCommand::Ls { config, next, json } = args.command;
    let runtime = Runtime::load(Some(&config), Overrides::default())?;
    let entries = crate::serve::daemon::schedule_entries(&runtime);
    let rows = describe(&entries, chrono::Utc::now(), next.max(1));
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!(
            "no pipeline in {} has a schedule",
            escape(&config.display().to_string())
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<16} {:<20} {:<16} {:<9} NEXT FIRES (UTC)",
        "PIPELINE", "TENANT", "SCHEDULE", "ZONE", "MISFIRE"
    );
    for row in rows {
        let next: Vec<String> = if row.enabled {
            row.next
                .iter()
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .collect()
        } else {
            vec!["(disabled)".into()]
        };
        println!(
            "{:<24} {:<16} {:<20} {:<16} {:<9} {}",
            escape(&row.pipeline),
            escape(&row.tenant),
            escape(&row.schedule),
            row.zone,
            row.misfire,
            next.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
