//! `cxpipe bench orchestration`: items per second of a no-op `process` through the whole
//! runner (discover → ledger admission → workers → batched ledger writes), and peak RSS,
//! each size measured in its own child process so their memory peaks are separate.

use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::Context as _;

use crate::ledger::Ledger;
use crate::runner;
use crate::runtime;

const NOOP: &str = r#"
fn discover(ctx) { for i in 0..ctx.params.items { ctx.emit(`item-${i}`, i); } }
fn process(ctx, item) { }
"#;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub which: BenchKind,
}

#[derive(Debug, clap::Subcommand)]
pub enum BenchKind {
    /// Orchestration overhead with a no-op `process` and the SQLite ledger.
    Orchestration {
        /// Item counts to measure (each in a fresh process).
        #[arg(long = "items", default_values_t = [10_000u64, 100_000, 1_000_000])]
        items: Vec<u64>,
        /// Worker threads.
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        /// Measure one size in this process (used by the parent).
        #[arg(long, hide = true)]
        child: bool,
    },
}

/// Peak resident set size of this process in MiB (Linux), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let BenchKind::Orchestration {
        items,
        concurrency,
        child,
    } = args.which;
    if child {
        let n = items.first().copied().unwrap_or(10_000);
        let out = measure(n, concurrency).await?;
        println!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    let exe = std::env::current_exe().context("locating the cxpipe binary")?;
    let mut rows = Vec::new();
    for n in &items {
        let out = Command::new(&exe)
            .args([
                "bench",
                "orchestration",
                "--child",
                "--items",
                &n.to_string(),
            ])
            .args(["--concurrency", &concurrency.to_string()])
            .output()
            .context("running a benchmark child")?;
        anyhow::ensure!(
            out.status.success(),
            "benchmark child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let row: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        println!("{row}");
        rows.push(row);
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        let ratio = last["peak_rss_mib"].as_f64().unwrap_or(0.0)
            / first["peak_rss_mib"].as_f64().unwrap_or(1.0);
        println!(
            "{{\"rss_ratio_largest_to_smallest\":{ratio:.2},\"items_per_sec_largest\":{}}}",
            last["items_per_sec"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn measure(n: u64, concurrency: usize) -> anyhow::Result<serde_json::Value> {
    let dir = tempfile_dir()?;
    // The run is assembled the way `run --pipeline` and `serve` assemble theirs.
    std::fs::write(dir.join("bench-noop.rhai"), NOOP)?;
    let config = dir.join("cxpipe.toml");
    std::fs::write(
        &config,
        format!(
            "[pipelines.bench-noop]\nscript = \"bench-noop.rhai\"\nconcurrency = {concurrency}\n\
             params = {{ items = {n} }}\n"
        ),
    )?;
    let ledger = Ledger::open_dir(&dir).await?;
    let request = runtime::pipeline_request(
        Some(&config),
        "bench-noop",
        None,
        Default::default(),
        ledger,
        false,
    )?;
    let started = Instant::now();
    let report = runner::run(request).await?;
    let secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        report.summary.done == n,
        "only {} of {n} items done",
        report.summary.done
    );
    Ok(serde_json::json!({
        "items": n,
        "concurrency": concurrency,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "items_per_sec": (n as f64 / secs).round(),
        "peak_rss_mib": peak_rss_mib().map(|m| (m * 10.0).round() / 10.0),
    }))
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("cxpipe-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
