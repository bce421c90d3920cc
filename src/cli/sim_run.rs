//! `cxpipe run SCRIPT --sim [--faults none|low|high] [--dir DIR]`: tries a pipeline against
//! an in-process simulator with a throwaway tenant, store, key and ledger, all in one folder
//! (`--dir`, or a new temporary folder that is kept), and prints where everything is. The
//! run itself is the ordinary `cxpipe run` (see [`super::run`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use super::demo::{ensure_key, write_private};
use super::run::RunArgs;
use super::sim::FaultLevel;
use crate::runner::RunReport;
use crate::sim::{Faults, SimConfig, SimServer, recording_ids};

/// The tenant name of the simulator in the config `--sim` writes.
pub const TENANT: &str = "sim";

#[derive(Debug, Clone, clap::Args)]
pub struct SimRunArgs {
    /// Run against an in-process CXone simulator with a throwaway tenant, store, key and
    /// ledger (in --dir, or a new temporary folder that is kept and printed).
    #[arg(long, conflicts_with_all = ["config", "store"])]
    pub sim: bool,
    /// Simulator hostility with --sim: `none`, `low` (429s, 5xx, cut streams) or `high`.
    #[arg(long, value_enum, default_value = "low", requires = "sim")]
    pub faults: FaultLevel,
    /// Folder for --sim's config, secret, key, objects and ledger (reused when it exists).
    #[arg(long, value_name = "DIR", requires = "sim")]
    pub dir: Option<PathBuf>,
    /// Recordings (and interactions, transcripts) in the simulated tenant with --sim.
    #[arg(long, default_value_t = 20, requires = "sim")]
    pub recordings: usize,
}

/// A simulator serving one run, and the folder of that run.
pub struct SimRun {
    server: SimServer,
    dir: PathBuf,
}

/// The `[tenants.sim]` table for a simulator at `base_url`; the client secret is read from
/// `secret` (`file = "…"` or `env = "…"`).
pub fn tenant_snippet(base_url: &str, client_id: &str, secret: &str) -> String {
    format!(
        r#"[tenants.{TENANT}]
base_url = "{base_url}"
auth = {{ kind = "client_credentials", token_url = "/api/v2/oauth/token", client_id = "{client_id}", client_secret = {{ {secret} }}, credentials_in = "body" }}
"#
    )
}

/// Params that make the shipped scripts finish in seconds on the simulator (short polls
/// and windows) and give `compliance_export.rhai` a request; other scripts ignore them.
fn params(ids: &[String]) -> String {
    format!(
        r#"[tenants.{TENANT}.params]
encrypt_key = "{TENANT}"
processing_poll = "1s"
poll_every = "500ms"
poll_max = "2s"
job_timeout = "60s"
segment_poll = "500ms"
assembly_window = "8s"
interaction_ids = {ids:?}
format = "wav"
jurisdiction = "US-CA"
date_start = "2023-06-01T00:00:00.000Z"
date_end = "2023-06-30T23:59:59.999Z"
"#
    )
}

impl SimRun {
    /// Starts the simulator, writes the folder (config, secret, key) and points `args`
    /// at it: `--config DIR/cxpipe.toml --tenant sim --state DIR/state`.
    pub async fn start(args: &mut RunArgs) -> anyhow::Result<SimRun> {
        let sim = &args.sim;
        let dir = match &sim.dir {
            Some(dir) => std::path::absolute(dir).context("resolving --dir")?,
            None => tempfile::Builder::new()
                .prefix("cxpipe-sim-")
                .tempdir()
                .context("creating a folder for the --sim run")?
                .keep(),
        };
        for sub in ["keys", "secrets", "objects", "state"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let mut config = SimConfig {
            seed: 7,
            recordings: sim.recordings,
            interactions: sim.recordings,
            transcripts: sim.recordings,
            newest_at: chrono::Utc::now().timestamp() - 3600,
            span: Duration::from_secs(75 * 24 * 3600),
            ..SimConfig::default()
        };
        config = match sim.faults {
            FaultLevel::None => config.without_faults(),
            FaultLevel::Low => config,
            FaultLevel::High => SimConfig {
                faults: Faults::high(),
                ..config
            },
        };
        let ids = recording_ids(&config, 6);
        let server = SimServer::start(config)
            .await
            .context("starting the simulator")?;
        let creds = server.credentials().clone();
        write_private(&dir.join("secrets/client_secret"), &creds.client_secret)?;
        ensure_key(&dir.join(format!("keys/{TENANT}.key")))?;
        let objects = dir.join("objects");
        let text = format!(
            "# Written by `cxpipe run --sim` for its in-process simulator; the base URL changes every run.\n{}\n{}\n[storage.default]\nuri = \"fs://{}\"\n\n[keys.{TENANT}]\nfile = \"keys/{TENANT}.key\"\n",
            tenant_snippet(
                server.base_url(),
                &creds.client_id,
                r#"file = "secrets/client_secret""#
            ),
            params(&ids),
            objects.display()
        );
        let config_path = dir.join("cxpipe.toml");
        std::fs::write(&config_path, text)
            .with_context(|| format!("writing {}", config_path.display()))?;
        eprintln!(
            "simulator: {} ({} recordings, faults {}); folder {}",
            server.base_url(),
            sim.recordings,
            format!("{:?}", sim.faults).to_lowercase(),
            dir.display()
        );
        args.config = Some(config_path);
        args.tenant = Some(TENANT.to_string());
        args.store = None;
        args.ledger.state = dir.join("state");
        args.ledger.ledger = None;
        Ok(SimRun { server, dir })
    }

    /// Stops the simulator and says what the run left where (on stderr with `--json`,
    /// whose stdout is the report).
    pub async fn finish(self, script: &Path, report: Option<&RunReport>, json: bool) {
        self.server.shutdown().await;
        let lines = guide(&self.dir, script, report);
        for line in lines {
            if json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
    }
}

/// Where the objects, ledger and config are, and the commands that look at them.
fn guide(dir: &Path, script: &Path, report: Option<&RunReport>) -> Vec<String> {
    let rel = |p: &str| dir.join(p).display().to_string();
    let objects = count_objects(&dir.join("objects"));
    let mut out = vec![String::new(), "where things are (--sim):".to_string()];
    out.push(format!(
        "  objects    {}  ({objects} object(s) stored so far, manifests beside them)",
        rel("objects")
    ));
    if let Some(report) = report {
        out.push(format!(
            "  this run   {} done, {} skipped, {} deferred, {} quarantined",
            report.summary.done,
            report.summary.skipped,
            report.summary.deferred,
            report.summary.quarantined
        ));
    }
    out.push(format!("  ledger     {}", rel("state/ledger.sqlite")));
    out.push(format!(
        "  config     {}  (tenant {TENANT}; the simulator is gone once this run ends)",
        rel("cxpipe.toml")
    ));
    out.push("look at the items, verify the objects, try again in the same folder:".into());
    let cxpipe = super::invocation::program();
    out.push(format!("  {cxpipe} items --state {} ls", rel("state")));
    out.push(format!(
        "  {cxpipe} verify fs://{} --config {}",
        rel("objects"),
        rel("cxpipe.toml")
    ));
    out.push(format!(
        "  {cxpipe} run {} --sim --dir {}",
        script.display(),
        dir.display()
    ));
    out.push(format!(
        "then against your tenant: {cxpipe} run {} --config cxpipe.toml --tenant NAME (--dry-run first)",
        script.display()
    ));
    out
}

/// Objects under `root` (manifests and partial files not counted), bounded in depth.
fn count_objects(root: &Path) -> usize {
    fn walk(dir: &Path, depth: usize) -> usize {
        if depth > 16 {
            return 0;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| {
                let path = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if path.is_dir() {
                    if name == crate::storage::PARTIAL_DIR {
                        0
                    } else {
                        walk(&path, depth + 1)
                    }
                } else {
                    usize::from(!name.ends_with(crate::storage::MANIFEST_SUFFIX))
                }
            })
            .sum()
    }
    walk(root, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snippet_is_a_valid_tenant_table() {
        let text = tenant_snippet("http://127.0.0.1:9", "cid", r#"env = "SIM_SECRET""#);
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        let tenant = &parsed["tenants"]["sim"];
        assert_eq!(
            tenant["auth"]["token_url"].as_str(),
            Some("/api/v2/oauth/token")
        );
        assert_eq!(
            tenant["auth"]["client_secret"]["env"].as_str(),
            Some("SIM_SECRET")
        );
    }

    #[test]
    fn objects_are_counted_without_manifests() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/x.wav"), "1").unwrap();
        std::fs::write(dir.path().join("a/b/x.wav.manifest.json"), "{}").unwrap();
        std::fs::write(dir.path().join("r.json"), "{}").unwrap();
        assert_eq!(count_objects(dir.path()), 2);
    }
}
