//! Seed 003: `scripts/recordings_transcripts.rhai` against the simulator with faults on
//! (429s, 5xx, resets and truncations mid-body, 3-second tokens, recordings still
//! processing, archived and expired media, transcript segments shuffled, late and missing),
//! checked against the simulator's own truth (`/_sim/truth/recordings`, `/transcripts`),
//! its counters, the ledger, the audit log and the store; a re-run does no new work. The
//! webhook hook `on_event` is driven through the real binary by a test-only wrapper script
//! that imports the shipped one unchanged and feeds it events built from the truth.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cxpipe::ledger::{ItemFilter, ItemRow, Ledger};
use cxpipe::sim::{Faults, SimConfig, SizeDistribution};
use serde_json::Value;

use crate::harness::{Sim, TestEnv};

pub const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scripts/recordings_transcripts.rhai"
);

pub(super) fn hostile(seed: u64, recordings: usize) -> SimConfig {
    SimConfig {
        seed,
        recordings,
        transcripts: recordings * 3 / 4,
        sizes: SizeDistribution {
            min: 20_000,
            max: 600_000,
            log_uniform: false,
        },
        processing_share: 0.1,
        processing_delay: Duration::from_secs(2),
        archived_share: 0.1,
        expired_share: 0.05,
        faults: Faults {
            token_ttl: Duration::from_secs(3),
            error_rate: 0.05,
            throttle_rate: 0.05,
            reset_rate: 0.08,
            truncate_rate: 0.05,
            transcript_missing_rate: 0.12,
            transcript_late_rate: 0.3,
            transcript_late_delay: Duration::from_secs(2),
            ..Faults::default()
        },
        ..SimConfig::default()
    }
}

/// A config for the simulator tenant: short assembly window and polls; `extra` is
/// appended to its params.
pub fn write_config(
    env: &TestEnv,
    base_url: &str,
    client_id: &str,
    secret: &str,
    extra: &str,
) -> PathBuf {
    env.write("secrets/client_secret", secret);
    env.write(
        "cxpipe.toml",
        &format!(
            r#"
[tenants.sim]
base_url = "{base_url}"
auth = {{ kind = "client_credentials", token_url = "/api/v2/oauth/token", client_id = "{client_id}", client_secret = {{ file = "secrets/client_secret" }} }}
[tenants.sim.params]
assembly_window = "6s"
segment_poll = "300ms"
processing_poll = "300ms"
{extra}
[storage.default]
uri = "fs://{}"
"#,
            env.path().join("objects").display()
        ),
    )
}

pub(super) fn sim_config(env: &TestEnv, sim: &Sim, extra: &str) -> PathBuf {
    write_config(
        env,
        &sim.base_url,
        &sim.credentials.client_id,
        &sim.credentials.client_secret,
        extra,
    )
}

pub fn run(env: &TestEnv, script: &Path, config: &Path) -> crate::harness::Ran {
    env.run(
        script,
        &["--config", config.to_str().unwrap(), "--tenant", "sim"],
    )
}

pub fn ledger_items(env: &TestEnv) -> BTreeMap<String, ItemRow> {
    tokio_block(async {
        let ledger = Ledger::open_dir(&env.state_dir()).await.unwrap();
        ledger
            .list_items(&ItemFilter::default(), 100_000)
            .await
            .unwrap()
            .into_iter()
            .map(|row| (row.key.clone(), row))
            .collect()
    })
}

pub fn tokio_block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

pub fn skip_reason(row: &ItemRow) -> String {
    let result: Value = serde_json::from_str(row.result.as_deref().unwrap_or("null")).unwrap();
    result["skipped"].as_str().unwrap_or_default().to_string()
}

pub fn object(env: &TestEnv, key: &str) -> Option<Vec<u8>> {
    std::fs::read(env.path().join("objects").join(key)).ok()
}

pub fn json_object(env: &TestEnv, key: &str) -> Option<Value> {
    object(env, key).map(|b| serde_json::from_slice(&b).unwrap())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Checks one stored transcript: utterances in start order, no two of one speaker
/// overlapping, flags exactly below 0.85, and a redacted copy without digits or e-mails.
pub fn assert_transcript_shape(env: &TestEnv, call_id: &str, prefix: &str) -> Value {
    let t = json_object(env, &format!("{prefix}{call_id}.json"))
        .unwrap_or_else(|| panic!("transcript of {call_id} stored"));
    let r = json_object(env, &format!("{prefix}{call_id}.redacted.json"))
        .unwrap_or_else(|| panic!("redacted transcript of {call_id} stored"));
    let us = t["utterances"].as_array().unwrap();
    let rs = r["utterances"].as_array().unwrap();
    assert_eq!(us.len(), rs.len(), "{call_id}");
    let mut last_end: BTreeMap<String, String> = BTreeMap::new();
    let mut prev_start = String::new();
    let mut flagged = 0;
    for (u, red) in us.iter().zip(rs) {
        let (start, end) = (
            u["startTime"].as_str().unwrap(),
            u["endTime"].as_str().unwrap(),
        );
        assert!(start >= prev_start.as_str(), "sorted by start: {t}");
        prev_start = start.to_string();
        let speaker = u["speaker"].as_str().unwrap().to_lowercase();
        if let Some(e) = last_end.get(&speaker) {
            assert!(start >= e.as_str(), "overlaps of one speaker merged: {t}");
        }
        last_end.insert(speaker, end.to_string());
        let low = u["confidence"].as_f64().is_none_or(|c| c < 0.85);
        assert_eq!(u["flagged"].as_bool(), Some(low), "{u}");
        flagged += usize::from(low);
        let text = red["text"].as_str().unwrap();
        assert!(
            !text.chars().any(|c| c.is_ascii_digit()) && !text.contains('@'),
            "redacted: {text}"
        );
        assert_eq!(red["startTime"], u["startTime"]);
    }
    assert_eq!(t["flaggedForReview"].as_u64(), Some(flagged as u64), "{t}");
    assert_eq!(r["redacted"], true);
    t
}

fn sim_stats_requests(sim: &Sim, route: &str) -> u64 {
    sim.get_json("/_sim/stats")["requests"][route]
        .as_u64()
        .unwrap_or(0)
}

const CONTENT: &str = "GET /api/v2/media/recordings/{id}/content";
const SEGMENT: &str = "GET /api/v2/media/transcripts/{id}";

#[test]
fn recordings_and_transcripts_under_faults_are_stored_once_and_assembled() {
    let sim = Sim::start(hostile(11, 40));
    let env = TestEnv::new();
    let config = sim_config(&env, &sim, "");

    let check = env.cxpipe(&["check", SCRIPT]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);

    let first = run(&env, Path::new(SCRIPT), &config);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let report = first.json()["report"].clone();

    let recordings = sim.get_json("/_sim/truth/recordings?limit=1000")["recordings"]
        .as_array()
        .unwrap()
        .clone();
    let transcripts: BTreeMap<String, Value> =
        sim.get_json("/_sim/truth/transcripts?limit=1000")["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["recordingId"].as_str().unwrap().to_string(), t.clone()))
            .collect();
    let items = ledger_items(&env);
    assert_eq!(items.len(), recordings.len(), "every recording listed once");

    let (mut stored, mut missing_audio, mut complete, mut incomplete) = (0, 0, 0, 0);
    for rec in &recordings {
        let id = rec["id"].as_str().unwrap();
        let call = rec["callId"].as_str().unwrap();
        let row = &items[id];
        let ctx = format!("{id}: {rec} / {row:?}");
        let media_key = format!("media/{call}/{id}.{}", rec["format"].as_str().unwrap());
        let gone = rec["archived"] == true || rec["expired"] == true;
        if gone {
            missing_audio += 1;
            assert_eq!(row.state, "skipped", "{ctx}");
            assert_eq!(skip_reason(row), "audio_missing", "{ctx}");
            assert!(object(&env, &media_key).is_none(), "{ctx}");
        } else {
            stored += 1;
            assert_eq!(row.state, "done", "{ctx}");
            let bytes = object(&env, &media_key).expect("media stored");
            let want = &rec["media"]["combined"];
            assert_eq!(
                bytes.len() as u64,
                want["sizeBytes"].as_u64().unwrap(),
                "{ctx}"
            );
            assert_eq!(
                sha256_hex(&bytes),
                want["sha256"].as_str().unwrap(),
                "{ctx}"
            );
            assert!(object(&env, &format!("{media_key}.manifest.json")).is_some());
        }
        let truth = &transcripts[id];
        let total = truth["totalSegments"].as_u64().unwrap();
        let key = format!("transcripts/{call}.json");
        if total == 0 {
            assert!(object(&env, &key).is_none(), "no transcript: {ctx}");
            continue;
        }
        let t = assert_transcript_shape(&env, call, "transcripts/");
        let segs = truth["segments"].as_array().unwrap();
        let want_missing: Vec<u64> = segs
            .iter()
            .filter(|s| s["state"] == "missing")
            .map(|s| s["segmentIndex"].as_u64().unwrap())
            .collect();
        let want_received: Vec<u64> = segs
            .iter()
            .filter(|s| s["state"] != "missing")
            .map(|s| s["segmentIndex"].as_u64().unwrap())
            .collect();
        let got = |f: &str| -> Vec<u64> {
            t[f].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect()
        };
        assert_eq!(
            got("segmentsReceived"),
            want_received,
            "late segments caught in the window: {ctx} {t}"
        );
        assert_eq!(got("missingSegments"), want_missing, "{ctx} {t}");
        assert_eq!(t["complete"], want_missing.is_empty(), "{t}");
        assert_eq!(t["audio_missing"], gone, "{t}");
        assert_eq!(t["totalSegments"].as_u64(), Some(total));
        if want_missing.is_empty() {
            complete += 1;
        } else {
            incomplete += 1;
        }
    }
    assert!(
        stored >= 20 && missing_audio >= 2 && complete >= 5 && incomplete >= 1,
        "the dataset exercises every path: {stored} {missing_audio} {complete} {incomplete}"
    );
    assert_eq!(report["transcripts_complete"].as_u64(), Some(complete));
    assert_eq!(report["transcripts_incomplete"].as_u64(), Some(incomplete));
    assert_eq!(report["audio_missing"].as_u64(), Some(missing_audio));

    // Stored exactly once: one audit entry per media object and transcript.
    let run_id = first.json()["summary"]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let audit = tokio_block(async {
        let ledger = Ledger::open_dir(&env.state_dir()).await.unwrap();
        ledger.audit_of_run(&run_id).await.unwrap()
    });
    let kinds = |k: &str| audit.iter().filter(|e| e.kind == k).count() as u64;
    assert_eq!(kinds("RECORDING_STORED"), stored);
    assert_eq!(kinds("TRANSCRIPT_STORED"), complete + incomplete);
    assert_eq!(kinds("AUDIO_MISSING"), missing_audio);
    let stats = sim.get_json("/_sim/stats");
    assert!(
        stats["resets"].as_u64().unwrap() + stats["truncations"].as_u64().unwrap() > 0
            && stats["throttled_429"].as_u64().unwrap() > 0,
        "faults were on: {stats}"
    );

    // A re-run does no new work: no media or segment request, nothing stored.
    let (content_before, segments_before) = (
        sim_stats_requests(&sim, CONTENT),
        sim_stats_requests(&sim, SEGMENT),
    );
    let again = run(&env, Path::new(SCRIPT), &config);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    let summary = &again.json()["summary"];
    assert_eq!(summary["done"], 0, "{summary}");
    assert_eq!(
        summary["already_done"].as_u64(),
        Some(recordings.len() as u64),
        "{summary}"
    );
    assert_eq!(sim_stats_requests(&sim, CONTENT), content_before);
    assert_eq!(sim_stats_requests(&sim, SEGMENT), segments_before);
}

/// A test-only driver: the shipped script, imported unchanged, gets the events of the
/// `events` param through its `on_event`, as the webhook receiver will call it.
const EVENT_DRIVER: &str = r#"
import "recordings_transcripts" as shipped;
const OPTIONS = #{ concurrency: 4, max_attempts: 3, retry_backoff: "1s", defer_max_wait: "1m", max_defers: 100000 };
fn discover(ctx) { for e in ctx.params.events { shipped::on_event(ctx, e); } }
fn process(ctx, item) { shipped::process(ctx, item) }
"#;

#[test]
fn webhook_events_through_on_event_store_each_recording_once() {
    let sim = Sim::start(
        SimConfig {
            seed: 5,
            recordings: 12,
            transcripts: 12,
            archived_share: 0.0,
            expired_share: 0.0,
            ..SimConfig::default()
        }
        .without_faults(),
    );
    let env = TestEnv::new();
    std::fs::copy(SCRIPT, env.path().join("recordings_transcripts.rhai")).unwrap();
    let driver = env.write("driver.rhai", EVENT_DRIVER);
    let truth = sim.get_json("/_sim/truth/transcripts?limit=1000")["recordings"]
        .as_array()
        .unwrap()
        .clone();
    // Each recording's created event (twice: CXone retries deliveries) and the completed
    // event of its transcript segments, the way the simulator's deliveries carry them.
    let mut events = Vec::new();
    for t in truth.iter().take(8) {
        let (id, call) = (
            t["recordingId"].as_str().unwrap(),
            t["callId"].as_str().unwrap(),
        );
        for _ in 0..2 {
            events.push(format!(
                r#"{{ eventType = "media.recording.created", recordingId = "{id}", callId = "{call}" }}"#
            ));
        }
        for s in t["segments"].as_array().unwrap() {
            events.push(format!(
                r#"{{ eventType = "media.transcript.completed", recordingId = "{id}", callId = "{call}", transcriptId = "{}" }}"#,
                s["id"].as_str().unwrap()
            ));
        }
    }
    let config = sim_config(&env, &sim, &format!("events = [{}]", events.join(", ")));
    let ran = run(&env, &driver, &config);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let items = ledger_items(&env);
    assert_eq!(items.len(), 8, "one item per recording, duplicates dropped");
    assert!(items.values().all(|r| r.state == "done"), "{items:?}");
    for t in truth.iter().take(8) {
        let call = t["callId"].as_str().unwrap();
        if t["totalSegments"].as_u64().unwrap() > 0 {
            let stored = assert_transcript_shape(&env, call, "transcripts/");
            assert_eq!(stored["complete"], true, "{stored}");
        }
    }
    assert_eq!(
        sim_stats_requests(&sim, CONTENT),
        8,
        "each media fetched once"
    );
}
