//! `cxpipe new NAME [--from WORKFLOW]`: writes a starting pipeline script (a shipped
//! workflow, or a minimal one showing emit, skip, a failure and its quarantine, and a store
//! write) and an example configuration beside it, then prints how to check, try and run it.
//! Never overwrites a file.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use crate::engine::embedded;

/// The minimal starting script; `{name}` is replaced by the pipeline's name.
const MINIMAL: &str = include_str!("new_minimal.rhai");

#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// Pipeline name (letters, digits, `_`, `-`): writes NAME.rhai and NAME.toml.
    pub name: String,
    /// Start from a shipped workflow instead of the minimal script (see docs/WORKFLOWS.md).
    #[arg(long, value_name = "WORKFLOW", value_parser = workflow_names())]
    pub from: Option<String>,
    /// Folder to write into (default: the current folder).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

/// The names `--from` accepts: every workflow embedded from `scripts/`.
fn workflow_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(embedded::SCRIPTS.iter().map(|(name, _)| *name))
}

pub async fn run(args: NewArgs) -> anyhow::Result<ExitCode> {
    let name = args.name.strip_suffix(".rhai").unwrap_or(&args.name);
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!(
            "pipeline name {name:?}: use letters, digits, `_` or `-` only (it names the files \
             and the pipeline), e.g. `cxpipe new my_pipeline`"
        );
    }
    let script = match &args.from {
        Some(workflow) => embedded::script(workflow)
            .with_context(|| format!("no shipped workflow {workflow:?}"))?
            .to_string(),
        None => MINIMAL.replace("{name}", name),
    };
    let script_path = in_dir(&args.dir, &format!("{name}.rhai"));
    let config_path = in_dir(&args.dir, &format!("{name}.toml"));
    for path in [&script_path, &config_path] {
        if path.exists() {
            bail!(
                "{} already exists; cxpipe new never overwrites a file: pick another name or \
                 remove it",
                path.display()
            );
        }
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating folder {}", args.dir.display()))?;
    write_new(&script_path, &script)?;
    write_new(&config_path, &config_text(name))?;

    let (s, c) = (script_path.display(), config_path.display());
    let origin = args
        .from
        .as_deref()
        .map(|w| format!(" (from the shipped workflow {w}; see docs/WORKFLOWS.md)"))
        .unwrap_or_default();
    println!("wrote {s}{origin}");
    println!("wrote {c} (an example configuration: a simulator tenant and a folder store)");
    let cxpipe = super::invocation::program();
    let steps = [
        (
            format!("{cxpipe} check {s}"),
            "every problem at once, with file:line:col".to_string(),
        ),
        (
            format!("{cxpipe} run {s} --sim"),
            "try it against a throwaway simulator".to_string(),
        ),
        (
            format!("{cxpipe} sim"),
            format!("or run a simulator, fill in {c}, then:"),
        ),
        (
            format!("{cxpipe} run {s} --config {c} --tenant sim"),
            String::new(),
        ),
    ];
    let width = steps.iter().map(|(cmd, _)| cmd.len()).max().unwrap_or(0);
    println!();
    println!("next:");
    for (cmd, why) in steps {
        if why.is_empty() {
            println!("  {cmd}");
        } else {
            println!("  {cmd:width$}  # {why}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `file` in `dir`, shown without a leading `./` for the current folder.
fn in_dir(dir: &Path, file: &str) -> PathBuf {
    if dir == Path::new(".") {
        PathBuf::from(file)
    } else {
        dir.join(file)
    }
}

/// Creates `path` with `text`, failing if it appeared meanwhile.
fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The example configuration written beside the script.
fn config_text(name: &str) -> String {
    format!(
        r#"# Example configuration for {name}.rhai (see docs/CONFIG.md). Start a simulator with
# `cxpipe sim`, copy the BASE_URL and CLIENT_ID it prints below, and export its
# CLIENT_SECRET as CXPIPE_SIM_SECRET. Then:
#   cxpipe run {name}.rhai --config {name}.toml --tenant sim
[tenants.sim]
base_url = "http://127.0.0.1:PORT"   # BASE_URL printed by `cxpipe sim`
auth = {{ kind = "client_credentials", token_url = "/api/v2/oauth/token", client_id = "CLIENT_ID", client_secret = {{ env = "CXPIPE_SIM_SECRET" }}, credentials_in = "body" }}

[tenants.sim.params]                 # ctx.params for this tenant (also `--param k=v`)

# Where ctx.store writes (relative to the folder you run from).
[storage.default]
uri = "fs://{name}-out"
"#
    )
}
