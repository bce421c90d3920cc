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
    /// (`--state` is the ledger folder.)
    #[arg(long, value_name = "STATE", value_parser = parse_status)]
    pub status: Option<ItemState>,
}

/// `--status` values: the item states, with the list in the error.
fn parse_status(s: &str) -> Result<ItemState, String> {
    s.parse().map_err(|_| {
        let names: Vec<&str> = ItemState::ALL.iter().map(|st| st.as_str()).collect();
        format!("unknown item state {s:?}; one of: {}", names.join(", "))
    })
}

/// `items retry --state quarantined`, the spelling of the filter before it was named
/// `--status`: `--state` names the ledger folder, so a missing folder named like an item
/// state gets an error that says which flag was meant.
fn refuse_state_used_as_filter(ledger: &LedgerArgs) -> anyhow::Result<()> {
    let named = ledger.state.to_string_lossy();
    if ledger.ledger.is_none() && !ledger.state.exists() && named.parse::<ItemState>().is_ok() {
        bail!(
            "--state names the ledger folder, and there is no folder \"{}\"; to select items \
             in state {named}, use --status {named}",
            escape(&named)
        );
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum ItemsAction {
    /// Counts by state, then items, the most recently changed first (ties by key).
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
        /// The item's key, as `items ls` prints it (after the pipeline/tenant/).
        key: String,
        #[command(flatten)]
        filter: FilterArgs,
        /// Print each matching item (one per pipeline/tenant) as a JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Put items back to pending so the next run processes them (by key, or all matching --status).
    Retry {
        /// Keys of the items to retry; none: every item matching the filters (--status needed).
        keys: Vec<String>,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

fn filter_of(f: &FilterArgs, key: Option<String>) -> ItemFilter {
    ItemFilter {
        pipeline: f.pipeline.clone(),
        tenant: f.tenant.clone(),
        state: f.status,
        key,
    }
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
    refuse_state_used_as_filter(&args.ledger)?;
    let ledger = args.ledger.open_existing().await?;
    match args.action {
        ItemsAction::Ls {
            filter,
            limit,
            json,
        } => {
            let f = filter_of(&filter, None);
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
                if !rows.is_empty() {
                    println!(
                        "{:<12} {:>8}  PIPELINE/TENANT/KEY  LAST ERROR",
                        "STATE", "ATTEMPTS"
                    );
                }
                for r in &rows {
                    let err = r
                        .last_error
                        .as_deref()
                        .and_then(|e| e.lines().next())
                        .unwrap_or("");
                    println!(
                        "{:<12} {:>8}  {}/{}/{}  {}",
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
                .list_items(&filter_of(&filter, Some(key.clone())), 100)
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
            if keys.is_empty() && filter.status.is_none() {
                bail!("name the items to retry: give keys, or --status quarantined (for example)");
            }
            let mut n = 0;
            if keys.is_empty() {
                n += ledger.retry_items(&filter_of(&filter, None)).await?;
            }
            for key in keys {
                n += ledger.retry_items(&filter_of(&filter, Some(key))).await?;
            }
            println!("{n} item(s) will be processed again by the next run");
        }
    }
    Ok(ExitCode::SUCCESS)
}
