//! `cxpipe items ls|show|retry`: look at and re-queue items in the ledger.

use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;

use super::ledger_args::LedgerArgs;
use crate::ledger::{ItemFilter, ItemRow, ItemState};
use crate::terminal::{escape, escape_lines};

#[derive(Debug, clap::Args)]
pub struct ItemsArgs {
    #[command(flatten)]
    pub ledger: LedgerArgs,
    #[command(subcommand)]
    pub action: ItemsAction,
}

#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    /// Only this pipeline (script file stem).
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only items in this state (pending, leased, done, skipped, deferred, failed, quarantined).
    #[arg(long)]
    pub state: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ItemsAction {
    /// List items (newest first) and counts by state.
    Ls {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many rows.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// JSON lines on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show one item: state, attempts, last error (with file:line), result, payload.
    Show {
        key: String,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long)]
        json: bool,
    },
    /// Put items back to pending so the next run processes them (by key, or all matching --state).
    Retry {
        keys: Vec<String>,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

fn filter_of(f: &FilterArgs, key: Option<String>) -> anyhow::Result<ItemFilter> {
    let state = f
        .state
        .as_deref()
        .map(str::parse::<ItemState>)
        .transpose()?;
    Ok(ItemFilter {
        pipeline: f.pipeline.clone(),
        tenant: f.tenant.clone(),
        state,
        key,
    })
}

fn print_row(row: &ItemRow) {
    println!(
        "{}/{}/{}: {}",
        escape(&row.pipeline),
        escape(&row.tenant),
        escape(&row.key),
        escape(&row.state)
    );
    println!("  attempts: {}", row.attempts);
    if let Some(at) = row.next_at {
        let t = chrono::DateTime::from_timestamp_millis(at)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        println!("  next attempt: {t}");
    }
    if let Some(e) = &row.last_error {
        println!("  last error: {}", escape_lines(e, "    "));
    }
    if let Some(r) = &row.result {
        println!("  result: {}", escape(r));
    }
    if let Some(h) = &row.script_hash {
        println!("  script: {}", escape(h));
    }
    if let Some(p) = &row.payload {
        println!("  item: {}", escape(p));
    }
}

pub async fn run(args: ItemsArgs) -> anyhow::Result<ExitCode> {
    let ledger = args.ledger.open_existing().await?;
    match args.action {
        ItemsAction::Ls {
            filter,
            limit,
            json,
        } => {
            let f = filter_of(&filter, None)?;
            let rows = ledger.list_items(&f, limit).await?;
            if json {
                for r in &rows {
                    println!("{}", serde_json::to_string(r)?);
                }
            } else {
                let counts = ledger.count_items(&f).await?;
                let line: Vec<String> = counts
                    .iter()
                    .map(|(s, n)| format!("{} {n}", escape(s)))
                    .collect();
                println!(
                    "{}",
                    if line.is_empty() {
                        "no items".to_string()
                    } else {
                        line.join(", ")
                    }
                );
                for r in &rows {
                    let err = r
                        .last_error
                        .as_deref()
                        .and_then(|e| e.lines().next())
                        .unwrap_or("");
                    println!(
                        "{:<12} {:>3}  {}/{}/{}  {}",
                        escape(&r.state),
                        r.attempts,
                        escape(&r.pipeline),
                        escape(&r.tenant),
                        escape(&r.key),
                        escape(err)
                    );
                }
            }
        }
        ItemsAction::Show { key, filter, json } => {
            let rows = ledger
                .list_items(&filter_of(&filter, Some(key.clone()))?, 100)
                .await?;
            if rows.is_empty() {
                bail!(
                    "no item with key \"{}\" in the ledger (try `cxpipe items ls`)",
                    escape(&key)
                );
            }
            for r in &rows {
                if json {
                    println!("{}", serde_json::to_string_pretty(r)?);
                } else {
                    print_row(r);
                }
            }
        }
        ItemsAction::Retry { keys, filter } => {
            if keys.is_empty() && filter.state.is_none() {
                bail!("name the items to retry: give keys, or --state quarantined (for example)");
            }
            let mut n = 0;
            if keys.is_empty() {
                n += ledger.retry_items(&filter_of(&filter, None)?).await?;
            }
            for key in keys {
                n += ledger.retry_items(&filter_of(&filter, Some(key))?).await?;
            }
            println!("{n} item(s) will be processed again by the next run");
        }
    }
    Ok(ExitCode::SUCCESS)
}
