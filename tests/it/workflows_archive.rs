//! Seed 004: `scripts/archive_interactions.rhai` run by the real binary against the
//! simulator with faults on, checked against the simulator's truth, the ledger and the
//! stored objects (decrypted and counted); and unchanged against a second server.

mod other_server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cxpipe::sim::{Faults, SimConfig};
use serde_json::Value;

use crate::download::{listing, write_config};
use crate::harness::{Sim, TestEnv};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scripts/archive_interactions.rhai"
);

/// Interactions on a hostile tenant: throttling, 5xx and 3-second tokens.
fn hostile(seed: u64, interactions: usize) -> SimConfig {
    SimConfig {
        seed,
        recordings: interactions / 3,
        interactions,
        faults: Faults {
            token_ttl: Duration::from_secs(3),
            error_rate: 0.08,
            throttle_rate: 0.08,
            ..Faults::default()
        },
        ..SimConfig::default()
    }
}

/// The simulator's interactions: `(id, status, archival_status)`.
fn truth(sim: &Sim) -> Vec<(String, String, Option<String>)> {
    sim.get_json("/_sim/truth/interactions?offset=0&limit=1000")["interactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["status"].as_str().unwrap().to_string(),
                i["archival_status"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// Decrypts every object under `interactions/` with `cxpipe decrypt` (either format):
/// object key → its records.
pub fn stored_records(env: &TestEnv, config: &Path) -> BTreeMap<String, Vec<Value>> {
    let mut out = BTreeMap::new();
    for (key, path) in listing(&env.path().join("objects")) {
        if !key.starts_with("interactions/") || key.ends_with(".manifest.json") {
            continue;
        }
        let plain = env.path().join("plain.jsonl");
        let dec = env.cxpipe(&[
            "decrypt",
            "--config",
            config.to_str().unwrap(),
            "--decompress",
            "gzip",
            path.to_str().unwrap(),
            "-o",
            plain.to_str().unwrap(),
        ]);
        assert_eq!(dec.code, 0, "decrypting {key}: {}", dec.stderr);
        let text = std::fs::read_to_string(&plain).unwrap();
        std::fs::remove_file(&plain).unwrap();
        let records = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        out.insert(key, records);
    }
    out
}

/// Checks one record has the archival schema: ISO 8601 times, flattened participants,
/// media metadata.
pub fn assert_archival_schema(r: &Value) {
    for field in ["created_time", "updated_time"] {
        let t = r[field].as_str().unwrap_or_else(|| panic!("{field}: {r}"));
        assert!(
            chrono::DateTime::parse_from_rfc3339(t).is_ok(),
            "{field} {t} is not ISO 8601"
        );
    }
    let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    let participants = r["participants"].as_array().unwrap();
    assert!(!participants.is_empty(), "{r}");
    for p in participants {
        assert_eq!(keys(p), ["address", "id", "state", "type"], "{r}");
    }
    for m in r["media_metadata"].as_array().unwrap() {
        assert_eq!(
            keys(m),
            [
                "created_time",
                "duration_ms",
                "format",
                "media_id",
                "playback_url",
                "type"
            ],
            "{r}"
        );
        let t = m["created_time"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
    }
}

/// Every closed interaction is in exactly one object and marked archived; no open one is
/// in any object or marked. Returns the number of closed interactions.
fn assert_archived_exactly_once(
    records: &BTreeMap<String, Vec<Value>>,
    truth: &[(String, String, Option<String>)],
) -> usize {
    let mut times: BTreeMap<String, usize> = BTreeMap::new();
    for recs in records.values() {
        assert!(!recs.is_empty());
        for r in recs {
            assert_archival_schema(r);
            *times
                .entry(r["interaction_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    let mut closed: Vec<&String> = truth
        .iter()
        .filter(|t| t.1 == "closed")
        .map(|t| &t.0)
        .collect();
    closed.sort();
    assert_eq!(
        times.keys().collect::<Vec<_>>(),
        closed,
        "archived interactions differ from the closed ones"
    );
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "archived more than once: {twice:?}");
    for (id, status, archival) in truth {
        let want = (status == "closed").then_some("archived");
        assert_eq!(
            archival.as_deref(),
            want,
            "archival_status of {id} ({status})"
        );
    }
    closed.len()
}

fn ledger_items(env: &TestEnv) -> Vec<cxpipe::ledger::ItemRow> {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let ledger = cxpipe::ledger::Ledger::open_dir(&env.state_dir())
            .await
            .unwrap();
        ledger
            .list_items(&Default::default(), 100_000)
            .await
            .unwrap()
    })
}

fn run(env: &TestEnv, config: &Path) -> crate::harness::Ran {
    env.run(
        Path::new(SCRIPT),
        &["--config", config.to_str().unwrap(), "--tenant", "sim"],
    )
}

#[test]
fn closed_interactions_are_archived_once_under_faults_and_a_rerun_does_no_new_work() {
    let sim = Sim::start(hostile(41, 70));
    let env = TestEnv::new();
    let config = write_config(
        &env,
        &sim.base_url,
        &sim.credentials.client_id,
        &sim.credentials.client_secret,
        "encrypt_key = \"k\"\nbatch_size = 7",
    );
    let first = run(&env, &config);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let report = first.json()["report"].clone();

    // The store: every closed interaction once, decrypted and in the archival schema.
    let truth = truth(&sim);
    let records = stored_records(&env, &config);
    let closed = assert_archived_exactly_once(&records, &truth);
    let open: Vec<&String> = truth
        .iter()
        .filter(|t| t.1 != "closed")
        .map(|t| &t.0)
        .collect();
    assert!(closed >= 40 && !open.is_empty(), "{truth:?}");
    assert!(
        records.values().flatten().any(|r| r["media_metadata"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["type"] == "recording")),
        "voice interactions carry their recording's metadata"
    );

    // The ledger: one done item per stored batch, every open interaction skipped with
    // its reason; the report agrees with both.
    let items = ledger_items(&env);
    let done: Vec<_> = items.iter().filter(|i| i.state == "done").collect();
    assert_eq!(done.len(), records.len(), "one done batch per object");
    let archived_in_ledger: u64 = done
        .iter()
        .map(|i| {
            let r: Value = serde_json::from_str(i.result.as_deref().unwrap()).unwrap();
            assert!(records.contains_key(r["key"].as_str().unwrap()), "{r}");
            r["archived"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(archived_in_ledger as usize, closed);
    for id in &open {
        let item = items
            .iter()
            .find(|i| i.key == format!("open:{id}"))
            .unwrap_or_else(|| panic!("open interaction {id} has no item"));
        assert_eq!(item.state, "skipped");
        assert_eq!(
            item.result.as_deref(),
            Some(r#"{"skipped":"not closed (open)"}"#)
        );
    }
    assert_eq!(items.len(), done.len() + open.len(), "no other items");
    assert_eq!(report["archived"].as_u64(), Some(closed as u64), "{report}");
    assert_eq!(report["failed"].as_u64(), Some(0), "{report}");
    assert_eq!(report["success_rate"], "100.00%", "{report}");
    assert_eq!(
        report["interactions_seen"].as_u64(),
        Some(truth.len() as u64)
    );
    assert_eq!(
        report["skipped_by_reason"]["not closed (open)"].as_u64(),
        Some(open.len() as u64),
        "{report}"
    );
    let mut locations: Vec<&str> = report["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["key"].as_str().unwrap())
        .collect();
    locations.sort();
    assert_eq!(
        locations,
        records.keys().map(String::as_str).collect::<Vec<_>>()
    );

    // The faults happened and were survived.
    let stats = sim.get_json("/_sim/stats");
    for counter in ["throttled_429", "server_errors_5xx"] {
        assert!(
            stats[counter].as_u64().unwrap() > 0,
            "no {counter}: {stats}"
        );
    }
    assert!(stats["tokens_issued"].as_u64().unwrap() >= 2, "{stats}");

    let objects = format!("fs://{}", env.path().join("objects").display());
    let verify = env.cxpipe(&["verify", &objects, "--config", config.to_str().unwrap()]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);

    // A re-run does no new work: nothing admitted, nothing stored but its report.
    let before = listing(&env.path().join("objects")).len();
    let again = run(&env, &config);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let out = again.json();
    let s = &out["summary"];
    assert_eq!(
        (s["admitted"].as_u64(), s["done"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    assert_eq!(out["report"]["archived"].as_u64(), Some(0));
    assert_eq!(
        out["report"]["already_archived"].as_u64(),
        Some(closed as u64)
    );
    assert_eq!(listing(&env.path().join("objects")).len(), before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_way_then_rerun_archives_every_interaction_once() {
    let sim = Sim::start(hostile(43, 150));
    let env = std::sync::Arc::new(TestEnv::new());
    let config = write_config(
        &env,
        &sim.base_url,
        &sim.credentials.client_id,
        &sim.credentials.client_secret,
        "encrypt_key = \"k\"\nbatch_size = 5",
    );
    let state = env.state_dir();
    let mut child = env
        .command()
        .args(["run", SCRIPT, "--config", config.to_str().unwrap()])
        .args(["--tenant", "sim", "--state", state.to_str().unwrap()])
        .spawn()
        .unwrap();
    let objects = env.path().join("objects");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stored = listing(&objects)
            .keys()
            .filter(|k| k.starts_with("interactions/") && k.ends_with(".manifest.json"))
            .count();
        if stored >= 3 {
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

    let (rerun, records, truth) = tokio::task::spawn_blocking({
        let (env, config) = (env.clone(), config.clone());
        move || {
            let rerun = run(&env, &config);
            let records = stored_records(&env, &config);
            let truth = truth(&sim);
            drop(sim);
            (rerun, records, truth)
        }
    })
    .await
    .unwrap();
    assert_eq!(rerun.code, 0, "{}\n{}", rerun.stdout, rerun.stderr);
    assert_archived_exactly_once(&records, &truth);
    let counts = env.item_counts().await;
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["done", "skipped"],
        "every batch done, every open interaction skipped: {counts:?}"
    );
}

#[test]
fn members_of_a_batch_that_failed_for_good_stay_out_of_new_batches() {
    let sim = Sim::start(
        SimConfig {
            seed: 9,
            recordings: 10,
            interactions: 30,
            ..SimConfig::default()
        }
        .without_faults(),
    );
    let env = TestEnv::new();
    let config = write_config(
        &env,
        &sim.base_url,
        &sim.credentials.client_id,
        &sim.credentials.client_secret,
        "encrypt_key = \"k\"\nbatch_size = 4",
    );
    // An earlier run reserved three closed interactions for a batch that was quarantined.
    let before = truth(&sim);
    let held: Vec<String> = before
        .iter()
        .filter(|t| t.1 == "closed")
        .take(3)
        .map(|t| t.0.clone())
        .collect();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use cxpipe::ledger::{AdmitItem, ItemState, ItemUpdate, Ledger};
        let ledger = Ledger::open_dir(&env.state_dir()).await.unwrap();
        let (p, t) = ("archive_interactions", "sim");
        let batch = serde_json::json!({ "batch": "batch-held", "ids": held,
            "object": "interactions/batch-held.jsonl.gz.enc" })
        .to_string();
        ledger
            .kv_set(p, t, "batch/batch-held", &batch)
            .await
            .unwrap();
        let item = AdmitItem {
            key: "batch-held".into(),
            payload: batch,
        };
        ledger
            .admit(p, t, "earlier", "", i64::MAX, &[item])
            .await
            .unwrap();
        let update = ItemUpdate {
            pipeline: p.into(),
            tenant: t.into(),
            key: "batch-held".into(),
            state: ItemState::Quarantined,
            attempts: 5,
            next_at: None,
            result: None,
            last_error: Some("HTTP 500".into()),
            script_hash: None,
        };
        ledger.apply(&[update]).await.unwrap();
    });

    let ran = run(&env, &config);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let report = &ran.json()["report"];
    assert_eq!(
        report["interactions_in_unfinished_batches"].as_u64(),
        Some(3),
        "{report}"
    );
    let after = truth(&sim);
    let records = stored_records(&env, &config);
    let stored: Vec<&str> = records
        .values()
        .flatten()
        .map(|r| r["interaction_id"].as_str().unwrap())
        .collect();
    for (id, status, archival) in &after {
        let is_held = held.contains(id);
        let want = status == "closed" && !is_held;
        assert_eq!(
            stored.iter().filter(|s| **s == id).count(),
            usize::from(want),
            "{id}"
        );
        assert_eq!(archival.is_some(), want, "archival_status of {id}");
    }
}

/// Puts a batch in the ledger and `ctx.kv` as a run killed mid-batch leaves it: `state`
/// is the batch's kv entry, the item is left leased by a dead run.
fn leave_unfinished_batch(env: &TestEnv, state: &Value) {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use cxpipe::ledger::{AdmitItem, Ledger};
        let ledger = Ledger::open_dir(&env.state_dir()).await.unwrap();
        let (p, t) = ("archive_interactions", "sim");
        let name = state["batch"].as_str().unwrap();
        let text = state.to_string();
        ledger
            .kv_set(p, t, &format!("batch/{name}"), &text)
            .await
            .unwrap();
        let item = AdmitItem {
            key: name.into(),
            payload: text,
        };
        ledger
            .admit(p, t, "killed", "", i64::MAX, &[item])
            .await
            .unwrap();
    });
}

#[test]
fn a_batch_stored_before_a_kill_is_marked_not_written_again() {
    let sim = Sim::start(
        SimConfig {
            seed: 12,
            recordings: 10,
            interactions: 30,
            ..SimConfig::default()
        }
        .without_faults(),
    );
    let env = TestEnv::new();
    let config = write_config(
        &env,
        &sim.base_url,
        &sim.credentials.client_id,
        &sim.credentials.client_secret,
        "encrypt_key = \"k\"\nbatch_size = 4",
    );
    // The killed run had stored two of the batch's three members (the third's details were
    // gone) and was killed before marking them.
    let closed: Vec<String> = truth(&sim)
        .into_iter()
        .filter(|t| t.1 == "closed")
        .map(|t| t.0)
        .take(3)
        .collect();
    let object = "interactions/batch-killed.jsonl.gz.enc";
    let stored_bytes = env.write(&format!("objects/{object}"), "the earlier run's object");
    // Stored with its manifest: the write finished before the kill.
    env.write(&format!("objects/{object}.manifest.json"), "{}");
    leave_unfinished_batch(
        &env,
        &serde_json::json!({ "batch": "batch-killed", "ids": closed, "object": object,
            "included": [closed[0], closed[1]], "already": 0,
            "failed": [{ "interaction_id": closed[2], "reason": "details not fetched: HTTP 404" }] }),
    );

    let ran = run(&env, &config);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let report = &ran.json()["report"];
    assert_eq!(
        std::fs::read_to_string(&stored_bytes).unwrap(),
        "the earlier run's object",
        "the stored batch is not written again"
    );
    assert!(
        report["locations"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({ "key": object, "interactions": 2 })),
        "{report}"
    );
    let after = truth(&sim);
    let marked = |id: &String| after.iter().find(|t| &t.0 == id).unwrap().2.is_some();
    assert!(
        marked(&closed[0]) && marked(&closed[1]),
        "its members are marked"
    );
    assert!(!marked(&closed[2]), "the member it left out is not");
    let elsewhere: usize = stored_records_except(&env, &config, object)
        .values()
        .flatten()
        .filter(|r| closed[..2].iter().any(|id| r["interaction_id"] == **id))
        .count();
    assert_eq!(elsewhere, 0, "its members are in no other object");
}

/// [`stored_records`] without `skip` (an object that is not an archive).
fn stored_records_except(env: &TestEnv, config: &Path, skip: &str) -> BTreeMap<String, Vec<Value>> {
    let moved = env.path().join("moved-aside");
    std::fs::rename(env.path().join("objects").join(skip), &moved).unwrap();
    let records = stored_records(env, config);
    std::fs::rename(&moved, env.path().join("objects").join(skip)).unwrap();
    records
}

/// Writes a config whose key `k` is a passphrase (for the seed-004 envelope).
fn passphrase_config(env: &TestEnv, sim: &Sim, extra: &str) -> PathBuf {
    let config = write_config(
        env,
        &sim.base_url,
        &sim.credentials.client_id,
        &sim.credentials.client_secret,
        extra,
    );
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "file = \"keys/k.key\"",
        "passphrase_env = \"CXPIPE_TEST_ARCHIVE_PASS\"\niterations = 100000",
    );
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn the_envelope_option_writes_guide_envelopes_stretched_once_per_run() {
    let sim = Sim::start(
        SimConfig {
            seed: 5,
            recordings: 10,
            interactions: 30,
            ..SimConfig::default()
        }
        .without_faults(),
    );
    let env = TestEnv::new();
    let config = passphrase_config(
        &env,
        &sim,
        "encrypt_key = \"k\"\nencryption = \"envelope\"\nbatch_size = 6",
    );
    let ran = env
        .command()
        .env("CXPIPE_TEST_ARCHIVE_PASS", "correct horse battery")
        .args(["run", SCRIPT, "--config", config.to_str().unwrap()])
        .args(["--tenant", "sim", "--json", "--state"])
        .arg(env.state_dir())
        .output()
        .unwrap();
    let ran: crate::harness::Ran = ran.into();
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);

    let passphrase = cxpipe::secret::Secret::new("correct horse battery");
    let mut salts = std::collections::BTreeSet::new();
    let mut records = BTreeMap::new();
    for (key, path) in listing(&env.path().join("objects")) {
        if !key.starts_with("interactions/") || key.ends_with(".manifest.json") {
            continue;
        }
        assert!(key.ends_with(".jsonl.gz.envelope.json"), "{key}");
        let bytes = std::fs::read(&path).unwrap();
        let envelope: Value = serde_json::from_slice(&bytes).unwrap();
        salts.insert(envelope["salt"].as_str().unwrap().to_string());
        let gz = cxpipe::flow::envelope::open(&bytes, &passphrase).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text)
            .unwrap();
        let recs: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        records.insert(key, recs);
    }
    assert!(records.len() >= 3, "{records:?}");
    assert_eq!(
        salts.len(),
        1,
        "the passphrase was stretched once, not per object"
    );
    assert_archived_exactly_once(&records, &truth(&sim));
}

/// A run killed between a batch's object and its manifest leaves the object alone: the
/// rerun checks it against the batch's records before writing the manifest. An object
/// that is not what the batch gives is named, left as it is, and its members unmarked.
#[test]
fn a_batch_object_without_its_manifest_is_checked_not_trusted() {
    let sim = Sim::start(
        SimConfig {
            seed: 12,
            recordings: 10,
            interactions: 30,
            ..SimConfig::default()
        }
        .without_faults(),
    );
    let env = TestEnv::new();
    let config = write_config(
        &env,
        &sim.base_url,
        &sim.credentials.client_id,
        &sim.credentials.client_secret,
        "encrypt_key = \"k\"\nbatch_size = 4",
    );
    let closed: Vec<String> = truth(&sim)
        .into_iter()
        .filter(|t| t.1 == "closed")
        .map(|t| t.0)
        .take(2)
        .collect();
    let object = "interactions/batch-cut.jsonl.gz.enc";
    let stored = env.write(&format!("objects/{object}"), "not this batch's bytes");
    leave_unfinished_batch(
        &env,
        &serde_json::json!({ "batch": "batch-cut", "ids": closed, "object": object,
            "included": closed, "already": 0, "failed": [] }),
    );
    let ran = run(&env, &config);
    assert_ne!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let out = format!("{}{}", ran.stdout, ran.stderr);
    assert!(
        out.contains(object) && out.contains("without its manifest"),
        "the error names the object: {out}"
    );
    assert_eq!(
        std::fs::read_to_string(&stored).unwrap(),
        "not this batch's bytes",
        "the object is left as it is"
    );
    assert!(
        !env.path()
            .join(format!("objects/{object}.manifest.json"))
            .exists()
    );
    let after = truth(&sim);
    let marked = |id: &String| after.iter().find(|t| &t.0 == id).unwrap().2.is_some();
    assert!(!closed.iter().any(marked), "no member is marked archived");
}
