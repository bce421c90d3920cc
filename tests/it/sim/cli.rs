//! `cxpipe sim` as a process: prints its base URL and credentials, starts fast with a large
//! dataset, and stays small in memory while serving it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::cxpipe_bin;

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[tokio::test]
async fn cxpipe_sim_prints_connection_details_starts_fast_and_stays_small() {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(cxpipe_bin())
        .args([
            "sim",
            "--recordings",
            "100000",
            "--faults",
            "none",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let startup = started.elapsed();
    let details: Value = serde_json::from_str(&line).unwrap();
    assert!(startup < Duration::from_secs(2), "startup took {startup:?}");
    let base = details["base_url"].as_str().unwrap();
    assert!(base.starts_with("http://127.0.0.1:"));

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let token: Value = client
        .post(format!("{base}/api/v2/oauth/token"))
        .basic_auth(
            details["client_id"].as_str().unwrap(),
            details["client_secret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap();
    let page: Value = client
        .get(format!(
            "{base}/api/v2/recording/search?status=Available&pageSize=100&sort=createdDate:desc"
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["recordings"].as_array().unwrap().len(), 100);
    assert!(page["totalCount"].as_u64().unwrap() > 90_000);
    let rss = rss_mib(child.id().unwrap());
    assert!(rss > 0.0 && rss < 200.0, "RSS {rss:.1} MiB");
    eprintln!("cxpipe sim --recordings 100000: first output after {startup:?}, RSS {rss:.1} MiB");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn cxpipe_sim_applies_a_faults_patch_and_rejects_a_bad_one() {
    let mut child = tokio::process::Command::new(cxpipe_bin())
        .args([
            "sim",
            "--recordings",
            "10",
            "--json",
            "--faults-patch",
            r#"{"error_rate": 0.5}"#,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let details: Value = serde_json::from_str(&line).unwrap();
    let url = format!("{}/_sim/control", details["base_url"].as_str().unwrap());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let knobs: Value = client.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(knobs["error_rate"], 0.5);
    child.kill().await.unwrap();

    let status = tokio::process::Command::new(cxpipe_bin())
        .args([
            "sim",
            "--recordings",
            "10",
            "--faults-patch",
            r#"{"error_rate": 7}"#,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(!status.success());
}
