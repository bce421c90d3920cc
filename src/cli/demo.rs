//! `cxpipe demo`: the seed-002 recording download end to end with nothing to set up. Starts
//! the simulator in-process on loopback (faults on), writes a config, a generated key and the
//! script into `./cxpipe-demo/`, runs `download_recordings.rhai` with encryption, then prints
//! the report, where everything is, and the commands that verify and decrypt the result.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use super::invocation::program;
use super::run::print_report;
use crate::engine::embedded;
use crate::ledger::Ledger;
use crate::runner;
use crate::sim::{Faults, SimConfig, SimServer};

use super::demo_workflows::{self, DemoWorkflow};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The shipped workflow to run (docs/WORKFLOWS.md).
    #[arg(long, default_value = "download_recordings", value_parser = demo_workflows::NAMES)]
    pub workflow: String,
    /// Folder for the config, key, objects, ledger and report.
    #[arg(long, default_value = "cxpipe-demo")]
    pub dir: PathBuf,
    /// Recordings in the simulated tenant.
    #[arg(long, default_value_t = 40)]
    pub recordings: usize,
    /// Dataset seed of the simulator.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Simulator hostility: `none`, `low` (default) or `high`.
    #[arg(long, default_value = "low", value_parser = ["none", "low", "high"])]
    pub faults: String,
    /// Print the run summary as JSON on stdout instead of the guided text.
    #[arg(long)]
    pub json: bool,
}

/// Writes `path` with `text` and owner-only permissions (keys and secrets).
pub(super) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// The demo key: kept across demo runs so earlier objects stay decryptable.
pub(super) fn ensure_key(path: &Path) -> anyhow::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    let key: [u8; 32] = rand::random();
    write_private(path, &format!("{}\n", hex::encode(key)))?;
    Ok(true)
}

/// The demo's `cxpipe.toml`: its header says how to run the pipeline again once the demo's
/// own simulator is gone (a `cxpipe sim` with the same dataset has the same credentials).
fn config_text(args: &DemoArgs, base_url: &str, dir: &Path, script: &str, tenant: &str) -> String {
    let cxpipe = program();
    let objects = dir.join("objects");
    let dir = dir.display();
    format!(
        r#"# Written by `cxpipe demo` for its in-process simulator, which stopped when the demo
# ended: {base_url} below answers no more. To run this pipeline again, start a
# simulator with the same dataset (and so the same credentials) in another terminal:
#   {cxpipe} sim --seed {seed} --recordings {recordings} --interactions {interactions} --faults {faults} --port 8321
# replace every {base_url} below with http://127.0.0.1:8321, then:
#   {cxpipe} run {dir}/{script} --config {dir}/cxpipe.toml --tenant demo --state {dir}/state
# The ledger in state/ remembers what is done; `cxpipe demo` again rewrites this file.
{tenant}
[storage.default]
uri = "fs://{objects}"

[keys.demo]
file = "keys/demo.key"
"#,
        objects = objects.display(),
        seed = args.seed,
        recordings = args.recordings,
        interactions = interactions(args.recordings),
        faults = args.faults,
    )
}

/// Interactions in the simulated tenant: half as many again as recordings.
fn interactions(recordings: usize) -> usize {
    recordings * 3 / 2
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = std::path::absolute(&args.dir).context("resolving the demo folder")?;
    for sub in ["keys", "secrets", "objects", "state"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    let faults = match args.faults.as_str() {
        "none" => Faults::none(),
        "high" => Faults::high(),
        _ => Faults::default(),
    };
    let workflow: &DemoWorkflow = demo_workflows::find(&args.workflow)?;
    let mut sim_config = SimConfig {
        seed: args.seed,
        recordings: args.recordings,
        interactions: interactions(args.recordings),
        newest_at: chrono::Utc::now().timestamp() - 3600,
        span: Duration::from_secs(75 * 24 * 3600),
        faults,
        ..SimConfig::default()
    };
    workflow.adjust(&mut sim_config);
    let sim = SimServer::start(sim_config)
        .await
        .context("starting the simulator")?;
    let creds = sim.credentials().clone();
    eprintln!(
        "simulator: {} ({} recordings, faults {})",
        sim.base_url(),
        args.recordings,
        args.faults
    );

    let new_key = ensure_key(&dir.join("keys/demo.key"))?;
    for (name, value) in workflow.secrets(&creds) {
        write_private(&dir.join("secrets").join(name), value)?;
    }
    let config = dir.join("cxpipe.toml");
    let tenant = workflow
        .tenant_config(sim.base_url(), &creds.client_id)
        .await?;
    let script_name = format!("{}.rhai", workflow.name);
    let text = config_text(&args, sim.base_url(), &dir, &script_name, &tenant);
    std::fs::write(&config, text)?;
    let script = dir.join(&script_name);
    let source =
        embedded::script(workflow.name).context("the demo script is not built into this binary")?;
    std::fs::write(&script, source)?;
    if new_key {
        eprintln!(
            "generated demo encryption key: {}",
            dir.join("keys/demo.key").display()
        );
    }

    let ledger = Ledger::open_dir(&dir.join("state")).await?;
    let request = crate::runtime::script_request(
        Some(&config),
        &script,
        "demo",
        None,
        Default::default(),
        ledger,
        !args.json,
    )?;
    let report = runner::run(request)
        .await
        .context("running the demo pipeline")?;
    sim.shutdown().await;

    print_report(&report, args.json)?;
    if !args.json {
        print_guide(&dir, workflow, &report.summary.run_id);
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_guide(dir: &Path, workflow: &DemoWorkflow, run_id: &str) {
    let rel = |p: &str| dir.join(p).display().to_string();
    let output = format!("objects/{}", workflow.output);
    let first = first_object(&dir.join(&output));
    println!();
    println!("where things are:");
    println!(
        "  objects    {}  (each with a .manifest.json beside it)",
        rel(&output)
    );
    println!(
        "  report     {}",
        rel(&format!("objects/{}/{run_id}.json", workflow.reports))
    );
    println!("  ledger     {}", rel("state/ledger.sqlite"));
    println!("  config     {}", rel("cxpipe.toml"));
    println!("  key        {}", rel("keys/demo.key"));
    println!("  script     {}", rel(&format!("{}.rhai", workflow.name)));
    println!();
    println!("verify every object against its manifest (decrypts, re-hashes):");
    println!(
        "  {} verify fs://{} --config {}",
        program(),
        rel("objects"),
        rel("cxpipe.toml")
    );
    if let Some(object) = first {
        let out = object
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".enc").to_string())
            .unwrap_or_default();
        println!("decrypt one recording:");
        println!(
            "  {} decrypt --config {} {} -o {}",
            program(),
            rel("cxpipe.toml"),
            object.display(),
            out
        );
    }
    println!("see the items in the ledger:");
    println!("  {} items --state {} ls", program(), rel("state"));
    println!("run this pipeline again later, against a simulator of your own:");
    println!("  see the first lines of {}", rel("cxpipe.toml"));
}

fn first_object(dir: &Path) -> Option<PathBuf> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "enc"))
        .collect();
    names.sort();
    names.into_iter().next()
}
