//! `cxpipe docs`: writes the scripting reference (docs/SCRIPTING.md) generated from the
//! engine's metadata, or with `--definitions DIR` the Rhai definition files (`*.d.rhai`)
//! editors read for completion.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use crate::engine::{EngineSettings, docs};
use crate::registry::build_engine;

#[derive(Debug, clap::Args)]
pub struct DocsArgs {
    /// Where the reference is written.
    #[arg(long, default_value = "docs/SCRIPTING.md")]
    pub out: PathBuf,
    /// Write Rhai definition files (`*.d.rhai`, for editor completion) into this folder
    /// instead of the reference.
    #[arg(long, value_name = "DIR")]
    pub definitions: Option<PathBuf>,
}

pub async fn run(args: DocsArgs) -> anyhow::Result<ExitCode> {
    let engine = build_engine(
        &EngineSettings::default(),
        Arc::new(crate::keys::KeyRing::empty()),
    );
    if let Some(dir) = &args.definitions {
        write_definitions(&engine, dir)?;
        println!(
            "wrote Rhai definition files to {} (point your editor's Rhai extension at this folder)",
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let text = docs::reference(&engine)?;
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the folder {}", parent.display()))?;
    }
    std::fs::write(&args.out, text)
        .with_context(|| format!("writing the scripting reference {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes the engine's definitions (every function and type, with docs) into `dir`.
fn write_definitions(engine: &rhai::Engine, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the definitions folder {}", dir.display()))?;
    engine
        .definitions()
        .with_headers(true)
        .include_standard_packages(true)
        .write_to_dir(dir)
        .with_context(|| format!("writing Rhai definition files into {}", dir.display()))
}
