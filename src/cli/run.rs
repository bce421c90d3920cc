//! `cxpipe run SCRIPT`: checks the script, runs it once against the ledger, prints the
//! report (human or `--json`), and exits non-zero when any item failed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use rhai::Dynamic;

use super::ledger_args::LedgerArgs;
use crate::config::Config;
use crate::engine::{EngineSettings, Script};
use crate::ledger::Ledger;
use crate::registry::build_engine;
use crate::runner::{self, PipelineOptions, RunReport, RunRequest};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The pipeline script.
    pub script: PathBuf,
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// A parameter for `ctx.params` (`k=v`; `v` is parsed as JSON when it can be).
    #[arg(long = "param", value_name = "K=V")]
    pub params: Vec<String>,
    /// Tenant name (selects `[tenants.NAME]` in the config).
    #[arg(long, default_value = "default")]
    pub tenant: String,
    /// Configuration file: tenants, stores, keys, params (see docs/CONFIG.md).
    #[arg(long, value_name = "FILE", env = "CXPIPE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The `[storage.NAME]` that `ctx.store` writes to (default `default`, or the only one).
    #[arg(long, value_name = "NAME")]
    pub store: Option<String>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Do not draw the progress bar.
    #[arg(long)]
    pub no_progress: bool,
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

/// Compiles and checks `path`; every problem becomes one error.
pub fn load_checked(
    engine: &rhai::Engine,
    path: &std::path::Path,
) -> anyhow::Result<(Script, PipelineOptions)> {
    super::check::load_and_check(engine, path).map_err(|problems| {
        anyhow::anyhow!(
            "{} has {} problem(s):\n{}",
            path.display(),
            problems.len(),
            problems.join("\n")
        )
    })
}

/// Loads the config (if any), builds the engine with its keys, compiles and checks the
/// script, and assembles the run.
pub fn prepare(
    script: &Path,
    config: Option<&Path>,
    tenant: &str,
    store: Option<&str>,
    params: serde_json::Map<String, serde_json::Value>,
    ledger: Ledger,
    progress: bool,
) -> anyhow::Result<RunRequest> {
    let config = match config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let setup = config.setup(tenant, store, params)?;
    let engine = build_engine(
        &EngineSettings::with_scripts(&config.file.scripts),
        setup.keys.clone(),
    );
    let (script, options) = load_checked(&engine, script)?;
    Ok(RunRequest {
        engine: Arc::new(engine),
        script: Arc::new(script),
        options,
        tenant: tenant.to_string(),
        params: setup.params,
        ledger,
        api: setup.api.map(Dynamic::from).unwrap_or(Dynamic::UNIT),
        store: setup.store.map(Dynamic::from).unwrap_or(Dynamic::UNIT),
        progress,
    })
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let ledger = args.ledger.open().await?;
    let request = prepare(
        &args.script,
        args.config.as_deref(),
        &args.tenant,
        args.store.as_deref(),
        parse_params(&args.params)?,
        ledger,
        !args.no_progress,
    )?;
    let report = runner::run(request).await.context("running the pipeline")?;
    print_report(&report, args.json)?;
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints the run report: JSON (`{summary, report}`) or a few human lines.
pub fn print_report(report: &RunReport, json: bool) -> anyhow::Result<()> {
    let s = &report.summary;
    if json {
        let out = serde_json::json!({ "summary": s, "report": report.report });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "run {} of {} for tenant {}: {}",
        s.run_id, s.pipeline, s.tenant, s.status
    );
    println!(
        "  emitted {} (already done {}), resumed {}, done {}, skipped {}, deferred {}, quarantined {}, retries {} in {:.1}s",
        s.emitted,
        s.already_done,
        s.resumed,
        s.done,
        s.skipped,
        s.deferred,
        s.quarantined,
        s.retries,
        s.duration_ms as f64 / 1000.0
    );
    for (reason, n) in &s.skip_reasons {
        println!("  skipped {n}: {reason}");
    }
    for f in &s.failures {
        println!(
            "  quarantined {} after {} attempt(s): {}",
            f.key,
            f.attempts,
            f.error.lines().next().unwrap_or("")
        );
    }
    if let Some(e) = &s.error {
        println!("  error: {e}");
    }
    if report.report != serde_json::to_value(s)? {
        println!("report:\n{}", serde_json::to_string_pretty(&report.report)?);
    }
    Ok(())
}
