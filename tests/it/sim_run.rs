//! `cxpipe run SCRIPT --sim`: every shipped script runs to completion against a throwaway
//! simulator tenant, store and ledger, and the run says where its output is; `cxpipe sim`
//! prints a `[tenants.sim]` table that works as it is.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Ran, TestEnv};

const SHIPPED: [&str; 5] = [
    "download_recordings",
    "retention_lifecycle",
    "compliance_export",
    "recordings_transcripts",
    "archive_interactions",
];

/// Runs `cxpipe ARGS`, killing it after `limit`.
fn bounded(env: &TestEnv, args: &[&str], limit: Duration) -> Ran {
    let mut child = env
        .command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            let ran: Ran = child.wait_with_output().unwrap().into();
            panic!(
                "cxpipe {args:?} still running after {limit:?}:\n{}",
                ran.stderr
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap().into()
}

#[test]
fn every_shipped_script_runs_to_completion_with_sim() {
    let env = TestEnv::new();
    for name in SHIPPED {
        let script = format!("{}/scripts/{name}.rhai", env!("CARGO_MANIFEST_DIR"));
        let dir = env.path().join(name);
        let ran = bounded(
            &env,
            &[
                "run",
                &script,
                "--sim",
                "--faults",
                "none",
                "--recordings",
                "8",
                "--dir",
                dir.to_str().unwrap(),
                "--json",
                "--no-progress",
            ],
            Duration::from_secs(240),
        );
        let out = ran.json();
        let summary = &out["summary"];
        assert_eq!(
            (ran.code, summary["status"].as_str()),
            (0, Some("completed")),
            "{name}: {summary}\n{}",
            ran.stderr
        );
        assert_eq!(summary["quarantined"], 0, "{name}: {summary}");
        assert!(
            summary["emitted"].as_u64().unwrap() > 0,
            "{name}: {summary}"
        );
        assert!(
            ran.stderr.contains("where things are (--sim):")
                && ran
                    .stderr
                    .contains(&dir.join("objects").display().to_string()),
            "{name}: {}",
            ran.stderr
        );
        assert!(dir.join("state/ledger.sqlite").is_file(), "{name}");
        assert!(dir.join("cxpipe.toml").is_file(), "{name}");
        let stored = std::fs::read_dir(dir.join("objects")).unwrap().count();
        assert!(stored > 0, "{name} stored nothing");
    }
}

#[test]
fn sim_without_dir_keeps_a_new_folder_and_prints_it() {
    let env = TestEnv::new();
    let script = env.write(
        "first.rhai",
        r#"
fn discover(ctx) {
    for rec in ctx.api.paginate("/api/v2/recording/search", #{ style: "cursor",
            items: "recordings", next: "nextPageToken", param: "pageToken" }) {
        ctx.emit(rec.recordingId, rec);
    }
}
fn process(ctx, rec) {
    from_json(rec).sha256().write(ctx.store, `meta/${rec.recordingId}.json`)
}
"#,
    );
    let ran = bounded(
        &env,
        &[
            "run",
            script.to_str().unwrap(),
            "--sim",
            "--recordings",
            "5",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let line = ran
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("objects "))
        .unwrap_or_else(|| panic!("no objects line:\n{}", ran.stdout));
    assert!(line.contains("5 object(s) stored"), "{line}");
    let objects = Path::new(line.split_whitespace().nth(1).unwrap());
    let folder = objects.parent().unwrap().to_path_buf();
    assert!(
        folder
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("cxpipe-sim-"),
        "{line}"
    );
    assert_eq!(std::fs::read_dir(objects.join("meta")).unwrap().count(), 10);
    std::fs::remove_dir_all(&folder).unwrap();
}

#[test]
fn sim_prints_a_tenant_table_that_runs_as_it_is() {
    let env = TestEnv::new();
    let mut child = env
        .command()
        .args(["sim", "--recordings", "3", "--faults", "none", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let details: Value = serde_json::from_str(&line).unwrap();
    let snippet = details["config_snippet"].as_str().unwrap();
    assert!(
        snippet.contains("token_url = \"/api/v2/oauth/token\""),
        "{snippet}"
    );
    let config = env.write("cxpipe.toml", snippet);
    let script = env.write(
        "count.rhai",
        "fn discover(ctx) { let p = ctx.api.get(\"/api/v2/recordings\", #{ limit: 2 }); \
         for r in p.items { ctx.emit(`${r.id}`, r); } }\nfn process(ctx, r) { r.id }\n",
    );
    let ran = env
        .command()
        .args(["run", script.to_str().unwrap(), "--config"])
        .arg(&config)
        .args(["--tenant", "sim", "--json", "--state"])
        .arg(env.state_dir())
        .env(
            details["client_secret_env"].as_str().unwrap(),
            details["client_secret"].as_str().unwrap(),
        )
        .output()
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let ran: Ran = ran.into();
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.json()["summary"]["done"], 2);
}
