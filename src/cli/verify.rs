//! `cxpipe verify STORE [PREFIX]`: re-reads stored objects, decrypts and decompresses them
//! when the keys are loaded, recomputes hashes and compares them with the manifests, and
//! (keys loaded) authenticates each manifest's MAC. Prints one line per problem on stdout;
//! exits 1 when there is any.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::keys::KeyRing;
use crate::runtime::tools::{load_keys, open_store};

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// A store URI (`fs:///dir`, `s3://bucket/prefix?endpoint=...`) or a `[storage.NAME]`.
    pub store: String,
    /// Only objects whose key starts with this prefix.
    #[arg(default_value = "")]
    pub prefix: String,
    /// Configuration file with `[keys.NAME]` (to check plaintext hashes) and `[storage.NAME]`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON instead of lines.
    #[arg(long)]
    pub json: bool,
    /// With keys loaded, let manifests without a MAC (written before manifests were
    /// authenticated) pass with a note instead of a problem.
    #[arg(long)]
    pub accept_unauthenticated: bool,
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let keys = match &args.config {
        Some(p) => load_keys(p)?,
        None => KeyRing::empty(),
    };
    let store = open_store(&args.store, args.config.as_deref())?;
    let prefix = args.prefix.clone();
    let options = crate::flow::verify::VerifyOptions {
        accept_unauthenticated: args.accept_unauthenticated,
    };
    let report = tokio::task::spawn_blocking(move || {
        crate::flow::verify::verify_with(&store, &prefix, &keys, options)
    })
    .await??;
    if args.json {
        let v = serde_json::json!({
            "ok": report.ok,
            "problems": report.problems,
            "notes": report.notes,
        });
        println!("{v}");
    } else {
        for p in &report.problems {
            println!("MISMATCH {p}");
        }
        for n in &report.notes {
            eprintln!("note: {n}");
        }
        eprintln!(
            "verified {} objects: {} ok, {} problems",
            report.ok.len() + report.problems.len(),
            report.ok.len(),
            report.problems.len()
        );
    }
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
