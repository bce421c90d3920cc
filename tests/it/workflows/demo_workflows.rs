//! `cxpipe demo --workflow NAME` for every shipped workflow but the default (tested in
//! `tests/it/demo.rs`): it exits 0, writes objects where it says, and its report.

use std::time::{Duration, Instant};

use crate::download::listing;
use crate::harness::{Ran, TestEnv};

/// Runs `cxpipe demo --workflow NAME` with a small low-fault dataset, killed (and failed)
/// after `limit`.
fn demo(env: &TestEnv, workflow: &str, limit: Duration) -> Ran {
    let mut child = env
        .command()
        .args([
            "demo",
            "--workflow",
            workflow,
            "--dir",
            workflow,
            "--recordings",
            "8",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "demo --workflow {workflow} still running after {limit:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap().into()
}

fn assert_demo_writes(workflow: &str, output: &str) {
    let env = TestEnv::new();
    let ran = demo(&env, workflow, Duration::from_secs(240));
    assert_eq!(ran.code, 0, "{workflow}\n{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains(": completed"), "{}", ran.stdout);
    let objects = env.path().join(workflow).join("objects");
    let shown = format!("{}", objects.join(output).display());
    assert!(
        ran.stdout.contains(&shown),
        "{shown} not printed:\n{}",
        ran.stdout
    );
    let stored = listing(&objects);
    assert!(
        stored
            .keys()
            .any(|k| k.starts_with(output) && k.ends_with(".manifest.json")),
        "{workflow} wrote nothing under {output}: {:?}",
        stored.keys().collect::<Vec<_>>()
    );
    assert!(
        stored
            .keys()
            .any(|k| k.starts_with("reports/") && k.ends_with(".json")),
        "{workflow} wrote no report"
    );
}

#[test]
fn demo_runs_retention_lifecycle() {
    assert_demo_writes("retention_lifecycle", "reports/retention");
}

#[test]
fn demo_runs_compliance_export() {
    assert_demo_writes("compliance_export", "compliance");
}

#[test]
fn demo_runs_recordings_transcripts() {
    assert_demo_writes("recordings_transcripts", "transcripts");
}

#[test]
fn demo_runs_archive_interactions() {
    assert_demo_writes("archive_interactions", "interactions");
}

#[test]
fn demo_runs_export_contacts() {
    assert_demo_writes("export_contacts", "contacts");
}

#[test]
fn demo_refuses_an_unknown_workflow_and_names_the_known_ones() {
    let env = TestEnv::new();
    let ran = env.cxpipe(&["demo", "--workflow", "nope"]);
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("export_contacts"), "{}", ran.stderr);
}
