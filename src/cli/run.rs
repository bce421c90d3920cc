//! `cxpipe run SCRIPT`: checks the script, runs it once against the ledger, prints the
//! report (human or `--json`), and exits non-zero when any item failed. Ctrl-C (SIGINT) or
//! SIGTERM ends the run cleanly (see [`runner::StopSignal`]) with exit code 130 or 143; a
//! second one exits at once.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use anyhow::{Context as _, bail};

use super::ledger_args::LedgerArgs;
use super::sim_run::{SimRun, SimRunArgs};
use crate::dry_run::{self, DryRun};
use crate::runner::{self, RunReport, StopSignal};
use crate::runtime;
use crate::terminal::{escape, escape_lines};

/// Exit codes of a run ended by SIGINT and SIGTERM (128 + the signal, as shells report).
pub const EXIT_SIGINT: u8 = 130;
pub const EXIT_SIGTERM: u8 = 143;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The pipeline script (its stem names the pipeline in the ledger).
    #[arg(required_unless_present = "pipeline", conflicts_with = "pipeline")]
    pub script: Option<PathBuf>,
    /// Run the configured `[pipelines.NAME]` once instead of a script (see docs/CONFIG.md).
    #[arg(long, value_name = "NAME", requires = "config")]
    pub pipeline: Option<String>,
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// A parameter for `ctx.params` (`k=v`; `v` is parsed as JSON when it can be).
    #[arg(long = "param", value_name = "K=V")]
    pub params: Vec<String>,
    /// Tenant name (selects `[tenants.NAME]` in the config; default `default`, or with
    /// `--pipeline` its only tenant).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Configuration file: tenants, stores, keys, params (see docs/CONFIG.md).
    #[arg(long, value_name = "FILE", env = "CXPIPE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The `[storage.NAME]` that `ctx.store` writes to (default `default`, or the only one;
    /// with `--pipeline`, the pipeline's `store`).
    #[arg(long, value_name = "NAME", conflicts_with = "pipeline")]
    pub store: Option<String>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Do not draw the progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Change nothing: reads are sent; mutating API calls (POST, PUT, PATCH, DELETE; not
    /// `ctx.api.query` or `paginate` pages) and store writes are recorded instead, and the
    /// run works on a throwaway copy of the ledger. The report lists what would have changed.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub sim: SimRunArgs,
}

/// Parses `k=v` pairs; values that parse as JSON become JSON, others strings.
pub fn parse_params(
    pairs: &[String],
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let mut out = serde_json::Map::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("--param {pair:?}: expected KEY=VALUE");
        };
        let value =
            serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
        out.insert(k.trim().to_string(), value);
    }
    Ok(out)
}

pub async fn run(mut args: RunArgs) -> anyhow::Result<ExitCode> {
    let sim = match args.sim.sim {
        true => Some(SimRun::start(&mut args).await?),
        false => None,
    };
    let result = run_once(&args).await;
    if let Some(sim) = sim {
        let report = result.as_ref().ok().map(|(report, _)| report);
        let script = args.script.clone().unwrap_or_default();
        sim.finish(&script, report, args.json).await;
    }
    result.map(|(_, code)| code)
}

async fn run_once(args: &RunArgs) -> anyhow::Result<(RunReport, ExitCode)> {
    let dry = args.dry_run.then(DryRun::new);
    let throwaway = match &dry {
        Some(_) => Some(
            dry_run::ledger::throwaway_copy(&dry_run::ledger::ledger_file(
                &args.ledger.state,
                args.ledger.ledger.as_deref(),
            )?)
            .await?,
        ),
        None => None,
    };
    let ledger = match &throwaway {
        Some(copy) => copy.ledger.clone(),
        None => args.ledger.open().await?,
    };
    let params = parse_params(&args.params)?;
    let progress = !args.no_progress;
    let config = args.config.as_deref();
    let mut request = match (&args.pipeline, &args.script) {
        (Some(pipeline), _) => runtime::pipeline_request(
            config,
            pipeline,
            args.tenant.as_deref(),
            params,
            ledger,
            progress,
        )?,
        (None, Some(script)) => runtime::script_request(
            config,
            script,
            args.tenant.as_deref().unwrap_or(runtime::DEFAULT_TENANT),
            args.store.as_deref(),
            params,
            ledger,
            progress,
        )?,
        (None, None) => bail!("give a SCRIPT or --pipeline NAME"),
    };
    if let Some(dry) = &dry {
        dry.attach(&mut request);
    }
    let grace = request.options.interrupt_grace;
    let exit_code = Arc::new(OnceLock::new());
    let stop = StopSignal::new();
    let signals = Signals::watch()?;
    let listener = tokio::spawn(stop_on_signals(
        signals,
        stop.clone(),
        exit_code.clone(),
        grace,
    ));
    let result = runner::run_until(request, stop).await;
    listener.abort();
    let report = result.context("running the pipeline")?;
    print_report_and(&report, args.json, dry.as_ref())?;
    let code = if report.interrupted() {
        ExitCode::from(exit_code.get().copied().unwrap_or(EXIT_SIGINT))
    } else if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    Ok((report, code))
}

/// SIGINT and SIGTERM, watched from before the run starts (so an early Ctrl-C is not
/// lost to the default handler).
pub(super) struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    pub(super) fn watch() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                int: signal(SignalKind::interrupt()).context("watching SIGINT")?,
                term: signal(SignalKind::terminate()).context("watching SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal's name and the exit code it asks for.
    pub(super) async fn next(&mut self) -> (&'static str, u8) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => ("SIGINT", EXIT_SIGINT),
                _ = self.term.recv() => ("SIGTERM", EXIT_SIGTERM),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            ("Ctrl-C", EXIT_SIGINT)
        }
    }
}

/// Fires `stop` on the first signal (recording the exit code it asks for); exits the
/// process at once on a second one.
async fn stop_on_signals(
    mut signals: Signals,
    stop: StopSignal,
    code: Arc<OnceLock<u8>>,
    grace: std::time::Duration,
) {
    let (name, exit) = signals.next().await;
    let _ = code.set(exit);
    tracing::warn!(
        signal = name,
        grace_s = grace.as_secs_f64(),
        "stopping: no new items start; items in flight may finish within the grace, the \
         rest are released for the next run (signal again to exit now)"
    );
    stop.stop(format!("interrupted by {name}"));
    let (name, exit) = signals.next().await;
    tracing::error!(signal = name, "second signal: exiting now");
    std::process::exit(i32::from(exit));
}

/// Prints the run report: JSON (`{summary, report}`, `report` only when `finish` returned
/// something other than the summary) or a few human lines.
pub fn print_report(report: &RunReport, json: bool) -> anyhow::Result<()> {
    print_report_and(report, json, None)
}

/// [`print_report`], then (for a dry run) what would have changed (`dry_run` in JSON).
pub fn print_report_and(
    report: &RunReport,
    json: bool,
    dry: Option<&DryRun>,
) -> anyhow::Result<()> {
    let s = &report.summary;
    let own_report = report.report != serde_json::to_value(s)?;
    if json {
        let mut out = serde_json::json!({ "summary": s });
        if own_report {
            out["report"] = report.report.clone();
        }
        if let Some(dry) = dry {
            out["dry_run"] = dry_run::report::to_json(&dry.changes());
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "run {} of {} for tenant {}: {}",
        escape(&s.run_id),
        escape(&s.pipeline),
        escape(&s.tenant),
        escape(&s.status)
    );
    println!(
        "  emitted {} (already done {}, duplicates {}), resumed {}, done {}, skipped {}, deferred {}, quarantined {}, failed {}, item retries {}{} in {:.1}s; checkpoint {}",
        s.emitted,
        s.already_done,
        s.duplicates,
        s.resumed,
        s.done,
        s.skipped,
        s.deferred,
        s.quarantined,
        s.failed,
        s.retries,
        http_retries(s),
        s.duration_ms as f64 / 1000.0,
        s.checkpoint.as_str()
    );
    for (reason, n) in &s.skip_reasons {
        println!("  skipped {n}: {}", escape(reason));
    }
    // The whole error: the log leaves these out by default (see `cli::log_filter`).
    for f in &s.failures {
        println!(
            "  failed {} after {} attempt(s): {}",
            escape(&f.key),
            f.attempts,
            escape_lines(&f.error, "    ")
        );
    }
    let unlisted = s.quarantined.saturating_sub(s.failures.len() as u64);
    if unlisted > 0 {
        println!(
            "  … and {unlisted} more quarantined: {} items ls --status quarantined --pipeline {}",
            super::invocation::program(),
            escape(&s.pipeline)
        );
    }
    if let Some(e) = &s.error {
        println!("  error: {}", escape_lines(e, "    "));
    }
    if own_report {
        println!("report:\n{}", serde_json::to_string_pretty(&report.report)?);
    }
    for line in dry
        .map(|d| dry_run::report::lines(&d.changes()))
        .unwrap_or_default()
    {
        println!("{line}");
    }
    Ok(())
}

/// `, HTTP retries N` when the run used the tenant API (its retries inside one attempt,
/// apart from item retries).
fn http_retries(s: &runner::summary::Summary) -> String {
    s.metrics
        .get("api.retries")
        .map(|n| format!(", HTTP retries {n}"))
        .unwrap_or_default()
}
