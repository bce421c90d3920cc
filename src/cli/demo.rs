//! `cxpipe demo`: the seed-002 recording download end to end with nothing to set up. Starts
//! the simulator in-process on loopback (faults on), writes a config, a generated key and the
//! script into `./cxpipe-demo/`, runs `download_recordings.rhai` with encryption, then prints
//! the report, where everything is, and the commands that verify and decrypt the result.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use super::run::print_report;
use crate::engine::embedded;
use crate::ledger::Ledger;
use crate::runner;
use crate::sim::{Faults, SimConfig, SimServer};

const SCRIPT: &str = "download_recordings";

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
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

fn config_text(base_url: &str, client_id: &str, objects: &Path) -> String {
    format!(
        r#"# Written by `cxpipe demo` for its in-process simulator; the base URL changes every run.
[tenants.demo]
base_url = "{base_url}"
auth = {{ kind = "client_credentials", token_url = "/api/v2/oauth/token", client_id = "{client_id}", client_secret = {{ file = "secrets/client_secret" }}, credentials_in = "body", scope = "recording:read recording:download" }}

[tenants.demo.params]
encrypt_key = "demo"
processing_poll = "2s"

[storage.default]
uri = "fs://{objects}"

[keys.demo]
file = "keys/demo.key"
"#,
        objects = objects.display()
    )
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
    let sim = SimServer::start(SimConfig {
        seed: args.seed,
        recordings: args.recordings,
        newest_at: chrono::Utc::now().timestamp() - 3600,
        span: Duration::from_secs(75 * 24 * 3600),
        faults,
        ..SimConfig::default()
    })
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
    write_private(&dir.join("secrets/client_secret"), &creds.client_secret)?;
    let config = dir.join("cxpipe.toml");
    std::fs::write(
        &config,
        config_text(sim.base_url(), &creds.client_id, &dir.join("objects")),
    )?;
    let script = dir.join(format!("{SCRIPT}.rhai"));
    let source =
        embedded::script(SCRIPT).context("the demo script is not built into this binary")?;
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
        print_guide(&dir, &report.summary.run_id);
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_guide(dir: &Path, run_id: &str) {
    let rel = |p: &str| dir.join(p).display().to_string();
    let first = first_object(&dir.join("objects/recordings"));
    println!();
    println!("where things are:");
    println!(
        "  objects    {}  (each with a .manifest.json beside it)",
        rel("objects/recordings")
    );
    println!(
        "  report     {}",
        rel(&format!("objects/reports/{run_id}.json"))
    );
    println!("  ledger     {}", rel("state/ledger.sqlite"));
    println!("  config     {}", rel("cxpipe.toml"));
    println!("  key        {}", rel("keys/demo.key"));
    println!("  script     {}", rel(&format!("{SCRIPT}.rhai")));
    println!();
    println!("verify every object against its manifest (decrypts, re-hashes):");
    println!(
        "  cargo run --release -- verify fs://{} --config {}",
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
            "  cargo run --release -- decrypt --config {} {} -o {}",
            rel("cxpipe.toml"),
            object.display(),
            out
        );
    }
    println!("see the items in the ledger:");
    println!("  cargo run --release -- items --state {} ls", rel("state"));
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
