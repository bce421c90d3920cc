//! `cxpipe check SCRIPT...`: compiles each script and checks hooks and calls, reporting
//! every problem with `file:line:col`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::engine::{EngineSettings, Script, ScriptError, check};
use crate::registry::build_engine;
use crate::runner::PipelineOptions;

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
    load_and_check(engine, path).err().unwrap_or_default()
}

/// Compiles the script once, checks its hooks, calls and `OPTIONS`; returns the script
/// ready to run, or every problem found.
pub fn load_and_check(
    engine: &rhai::Engine,
    path: &std::path::Path,
) -> Result<(Script, PipelineOptions), Vec<String>> {
    let script = match Script::load(engine, path) {
        Ok(s) => s,
        Err(ScriptError::Invalid(d)) => return Err(vec![d.to_string()]),
        Err(e) => return Err(vec![e.to_string()]),
    };
    let mut problems: Vec<String> = check::check(engine, &script)
        .into_iter()
        .map(|d| d.to_string())
        .collect();
    let options = match script.options(engine) {
        Ok(map) => PipelineOptions::from_map(&map)
            .map_err(|errors| {
                // `check` already reported, where written, those of a literal `OPTIONS`.
                let located = |e: &String| {
                    let key = e.split(": ").next().unwrap_or(e);
                    problems.iter().any(|p| p.contains(&format!(" {key}: ")))
                };
                let new: Vec<String> = errors
                    .iter()
                    .filter(|e| !located(e))
                    .map(|e| format!("{}: {e}", script.label))
                    .collect();
                problems.extend(new);
            })
            .ok(),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    match options {
        Some(options) if problems.is_empty() => Ok((script, options)),
        _ => Err(problems),
    }
}
