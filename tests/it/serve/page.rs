//! The status page at `GET /`, loaded in headless Chromium (`chromium --headless
//! --dump-dom`): the DOM a browser builds, without JavaScript, shows the pipelines, their
//! last runs and a reload error. Without chromium the test says SKIPPED loudly; under CI it
//! fails.

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use cxpipe::serve::status::{LastRun, PipelineStatus, RunCounts, RunningRun, StatusSnapshot};

use super::host::{FakeHost, serve};

pub const RELOAD_ERROR: &str =
    "pipelines/transcripts.rhai:12:9: Syntax error: Expecting ';' to terminate this statement";

/// Two pipelines × two tenants: one finished run, one running, one reload error.
pub fn snapshot() -> StatusSnapshot {
    let t = |s| DateTime::from_timestamp(s, 0).unwrap();
    let row = |pipeline: &str, tenant: &str| PipelineStatus {
        pipeline: pipeline.into(),
        tenant: tenant.into(),
        script_hash: Some(format!("{pipeline}-hash-0123456789abcdef")),
        next_fire: Some(t(1_800_000_600)),
        ..PipelineStatus::default()
    };
    let mut download = row("download", "acme");
    download.last_run = Some(LastRun {
        run_id: "run-download-acme-7".into(),
        status: "completed".into(),
        started_at: t(1_800_000_000),
        finished_at: Some(t(1_800_000_042)),
        duration_ms: Some(42_000),
        counts: RunCounts {
            done: 298,
            deferred: 2,
            ..RunCounts::default()
        },
        error: None,
    });
    let mut running = row("download", "beta");
    running.running = Some(RunningRun {
        run_id: "run-download-beta-3".into(),
        started_at: t(1_800_000_100),
        counts: RunCounts {
            done: 17,
            ..RunCounts::default()
        },
    });
    let mut broken = row("transcripts", "acme");
    broken.reload_error = Some(RELOAD_ERROR.into());
    StatusSnapshot {
        started_at: Some(t(1_799_999_000)),
        version: "0.1.0".into(),
        pipelines: vec![download, running, broken, row("transcripts", "beta")],
        ..Default::default()
    }
}

/// The Chromium binary, or None (after a loud SKIPPED line) when absent; panics under CI.
fn chromium() -> Option<&'static str> {
    for name in ["chromium", "chromium-browser"] {
        let found = std::process::Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return Some(name);
        }
    }
    if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
        panic!("chromium is not installed (CI requires it; `apt-get install -y chromium`)");
    }
    let line = "\nSKIPPED: the status page browser test (no `chromium` on PATH); install it with \
                `apt-get install -y chromium` (CI makes this a failure).\n";
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_pipelines_runs_and_reload_errors_in_a_headless_browser() {
    let Some(browser) = chromium() else {
        return;
    };
    let host = Arc::new(FakeHost::new(snapshot()).await);
    let base = serve(host).await;
    let profile = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(browser);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .arg("--no-first-run")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", &format!("{base}/")])
        .env("HOME", profile.path())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("chromium did not finish within 120 s")
        .unwrap();
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && dom.contains("<table"),
        "chromium failed ({}): {}\n{dom}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "cxpipe status",
        "download",
        "transcripts",
        "acme",
        "beta",
        "run-download-acme-7",
        "done 298, skipped 0, deferred 2",
        "run-download-beta-3",
        "2027-01-15T08:10:00Z",
        // The browser's DOM re-escapes the quote characters it needs; the text is the same.
        "pipelines/transcripts.rhai:12:9: Syntax error: Expecting ';' to terminate",
    ] {
        assert!(
            dom.contains(expected),
            "{expected:?} not in the page:\n{dom}"
        );
    }
    assert!(!dom.contains("<script"), "the page carries no script");
}
