//! `cxpipe check SCRIPT...`: compiles each script and checks hooks and calls, reporting
//! every problem with `file:line:col`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::engine::EngineSettings;
use crate::registry::build_engine;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Pipeline scripts to check.
    #[arg(required = true)]
    pub scripts: Vec<PathBuf>,
}

pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let engine = build_engine(
        &EngineSettings::default(),
        std::sync::Arc::new(crate::keys::KeyRing::empty()),
    );
    let mut failed = 0;
    for path in &args.scripts {
        let problems = problems_of(&engine, path);
        if problems.is_empty() {
            println!("{}: ok", path.display());
        } else {
            failed += 1;
            for p in problems {
                println!("{p}");
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Every problem in the script at `path`, one line (or block) each.
pub fn problems_of(engine: &rhai::Engine, path: &std::path::Path) -> Vec<String> {
    crate::runtime::load_and_check(engine, path)
        .err()
        .unwrap_or_default()
}
