//! Seeds 001 and 003 killed with SIGKILL mid-run, then re-run: everything completes and
//! nothing is stored twice — the store holds each file once, byte-exact, and the
//! simulator served each file's media once, plus at most one transfer per worker cut off
//! by the kill (resets are off here, so every media stream is a transfer the script began).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{compliance, transcripts};
use crate::download::listing;
use crate::harness::{Sim, TestEnv};

/// Workers of both scripts (`OPTIONS.concurrency`).
const WORKERS: u64 = 4;

/// Starts `cxpipe run SCRIPT` and kills it with SIGKILL once `stored` objects with
/// manifests are under `prefix`.
async fn run_then_kill(env: &TestEnv, script: &str, config: &Path, prefix: &str, stored: usize) {
    let state = env.state_dir();
    let mut child: Child = env
        .command()
        .args(["run", script, "--config", config.to_str().unwrap()])
        .args(["--tenant", "sim", "--state", state.to_str().unwrap()])
        .spawn()
        .unwrap();
    let objects = env.path().join("objects");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = listing(&objects)
            .keys()
            .filter(|k| k.starts_with(prefix) && k.ends_with(".manifest.json"))
            .count();
        if n >= stored {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "no progress");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

fn sha256_of(path: &PathBuf) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn recordings(sim: &Sim) -> Vec<Value> {
    sim.get_json("/_sim/truth/recordings?limit=1000")["recordings"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_export_killed_mid_way_then_rerun_stores_each_file_once() {
    let mut config = compliance::hostile(17, 40);
    config.faults.reset_rate = 0.0;
    config.faults.job_failure_rate = 0.2;
    let sim = Arc::new(Sim::start(config));
    let env = Arc::new(TestEnv::new());
    let truth = recordings(&sim);
    let ids: Vec<String> = truth
        .iter()
        .take(30)
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let config = compliance::write_config(&env, &sim, &ids, "");
    run_then_kill(&env, compliance::SCRIPT, &config, "compliance/", 6).await;

    let (rerun, stats, jobs, notes, items, stored) = tokio::task::spawn_blocking({
        let (env, sim, config) = (env.clone(), sim.clone(), config.clone());
        move || {
            let rerun = compliance::run(&env, &config);
            (
                rerun,
                sim.get_json("/_sim/stats"),
                sim.get_json("/_sim/truth/exports")["jobs"].clone(),
                sim.get_json("/_sim/truth/legal-hold")["notifications"].clone(),
                compliance::ledger_items(&env),
                listing(&env.path().join("objects")),
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(rerun.code, 0, "{}\n{}", rerun.stdout, rerun.stderr);
    assert_eq!(items.len(), 10, "30 ids in batches of 3: {items:?}");
    assert!(items.values().all(|r| r.state == "done"), "{items:?}");

    // The store: each recording once, byte-exact, nothing else.
    let files: Vec<&String> = stored
        .keys()
        .filter(|k| k.starts_with("compliance/") && !k.ends_with(".manifest.json"))
        .collect();
    assert_eq!(files.len(), ids.len(), "{files:?}");
    for id in &ids {
        let rec = truth.iter().find(|r| r["id"] == id.as_str()).unwrap();
        let key = format!("compliance/US-CA/{id}.{}", rec["format"].as_str().unwrap());
        let path = stored.get(&key).unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(
            &sha256_of(path),
            rec["media"]["combined"]["sha256"].as_str().unwrap(),
            "{key}"
        );
        assert!(
            stored.contains_key(&format!("{key}.manifest.json")),
            "{key}"
        );
    }

    // The server: every id in a completed job; a second completed job for a batch only
    // where the kill cut a submission off before its job id was kept (one per worker).
    let mut completed: BTreeMap<String, usize> = BTreeMap::new();
    for job in jobs.as_array().unwrap() {
        if job["phase"] == "COMPLETED" {
            for id in job["ids"].as_array().unwrap() {
                *completed
                    .entry(id.as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
    }
    assert_eq!(
        completed.keys().cloned().collect::<BTreeSet<_>>(),
        ids.iter().cloned().collect()
    );
    let extra_jobs: usize = completed.values().map(|n| n - 1).sum::<usize>() / 3;
    assert!(extra_jobs as u64 <= WORKERS, "{completed:?}");
    // Every batch notified to the legal-hold platform; again only for cut-off batches.
    let notes = notes.as_array().unwrap();
    assert!(
        (10..=10 + WORKERS as usize).contains(&notes.len()),
        "{notes:?}"
    );
    // Each file's media served once, plus transfers the kill cut off.
    let streams = stats["media_streams"].as_u64().unwrap();
    let n = ids.len() as u64;
    assert!(
        (n..=n + WORKERS).contains(&streams),
        "{streams} media streams for {n} files"
    );
    compliance::assert_audit_verifies(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_transcripts_killed_mid_way_then_rerun_stores_each_recording_once() {
    let mut config = transcripts::hostile(19, 40);
    config.faults.reset_rate = 0.0;
    config.faults.truncate_rate = 0.0;
    config.faults.media_bytes_per_sec = 300_000;
    let sim = Arc::new(Sim::start(config));
    let env = Arc::new(TestEnv::new());
    let config = transcripts::sim_config(&env, &sim, "");
    run_then_kill(&env, transcripts::SCRIPT, &config, "media/", 6).await;

    let (rerun, stats, truth, items, stored) = tokio::task::spawn_blocking({
        let (env, sim, config) = (env.clone(), sim.clone(), config.clone());
        move || {
            let rerun = transcripts::run(&env, Path::new(transcripts::SCRIPT), &config);
            (
                rerun,
                sim.get_json("/_sim/stats"),
                recordings(&sim),
                transcripts::ledger_items(&env),
                listing(&env.path().join("objects")),
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(rerun.code, 0, "{}\n{}", rerun.stdout, rerun.stderr);
    assert_eq!(items.len(), truth.len(), "every recording listed once");
    let mut wanted = BTreeSet::new();
    for rec in &truth {
        let id = rec["id"].as_str().unwrap();
        let row = &items[id];
        if rec["archived"] == true || rec["expired"] == true {
            assert_eq!(row.state, "skipped", "{id}: {row:?}");
            assert_eq!(transcripts::skip_reason(row), "audio_missing");
            continue;
        }
        assert_eq!(row.state, "done", "{id}: {row:?}");
        let key = format!(
            "media/{}/{id}.{}",
            rec["callId"].as_str().unwrap(),
            rec["format"].as_str().unwrap()
        );
        let path = stored.get(&key).unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(
            &sha256_of(path),
            rec["media"]["combined"]["sha256"].as_str().unwrap(),
            "{key}"
        );
        assert!(
            stored.contains_key(&format!("{key}.manifest.json")),
            "{key}"
        );
        wanted.insert(key);
    }
    let media: BTreeSet<String> = stored
        .keys()
        .filter(|k| k.starts_with("media/") && !k.ends_with(".manifest.json"))
        .cloned()
        .collect();
    assert_eq!(media, wanted, "each recording's media once, nothing else");
    assert!(wanted.len() >= 20, "{}", wanted.len());
    // Each recording's media served once, plus transfers the kill cut off.
    let streams = stats["media_streams"].as_u64().unwrap();
    let n = wanted.len() as u64;
    assert!(
        (n..=n + WORKERS).contains(&streams),
        "{streams} media streams for {n} recordings"
    );
}
