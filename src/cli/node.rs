//! `cxpipe node ls|drain`: the `cxpipe serve` nodes sharing a ledger (docs/SCALE.md), and
//! how one is asked to stop taking work so it can be stopped without a takeover wait.

use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;

use super::ledger_args::LedgerArgs;

#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    pub action: NodeAction,
}

#[derive(Debug, Subcommand)]
pub enum NodeAction {
    /// List the nodes registered in the ledger: heartbeat age, drain mark, leases held.
    Ls {
        #[command(flatten)]
        ledger: LedgerArgs,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Mark a node to drain: within one heartbeat it starts nothing new, its schedules
    /// stop, and its runs hand back what they have not started (items in flight finish).
    /// The other nodes take the work. Stop the process once `node ls` shows 0 runs.
    Drain {
        #[command(flatten)]
        ledger: LedgerArgs,
        /// The node, as `node ls` names it (`host:pid`).
        #[arg(required_unless_present = "all")]
        node: Option<String>,
        /// Drain every node.
        #[arg(long, conflicts_with = "node")]
        all: bool,
    },
}

pub async fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        NodeAction::Ls { ledger, json } => {
            let ledger = ledger.open_existing().await?;
            let nodes = ledger.nodes().await?;
            let now = crate::ledger::now_ms();
            if json {
                for n in &nodes {
                    println!("{}", serde_json::to_string(n)?);
                }
                return Ok(ExitCode::SUCCESS);
            }
            if nodes.is_empty() {
                println!(
                    "no node is registered (nodes register while `cxpipe serve` runs clustered)"
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<32} {:<22} {:>10} {:>7} {:>5}  STATE",
                "NODE", "LISTEN", "HEARTBEAT", "LEASES", "RUNS"
            );
            for n in &nodes {
                let age = format!("{:.1}s ago", (now - n.heartbeat_at).max(0) as f64 / 1000.0);
                let state = if n.draining_at.is_some() {
                    "draining"
                } else {
                    "serving"
                };
                println!(
                    "{:<32} {:<22} {:>10} {:>7} {:>5}  {state}",
                    crate::terminal::escape(&n.node),
                    crate::terminal::escape(n.listen.as_deref().unwrap_or("-")),
                    age,
                    n.leases,
                    n.runs
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        NodeAction::Drain { ledger, node, all } => {
            let ledger = ledger.open_existing().await?;
            let target = if all { None } else { node.as_deref() };
            let marked = ledger.drain_nodes(target).await?;
            if marked.is_empty() {
                bail!(
                    "no node {} is registered in this ledger; `cxpipe node ls` lists them",
                    target.unwrap_or("at all")
                );
            }
            for n in marked {
                println!("draining {}", crate::terminal::escape(&n));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
