//! Deferred items wait in the ledger, not in the run (issue 10, item 7): the seed-002
//! download run against a simulator where some recordings stay `Processing` far longer
//! than the run ends in about the time its real work takes, leaves them `deferred`, and a
//! later run finishes them from the ledger, nothing duplicated. Also `--log-format json`
//! (item 9): a worker's log line carries its run's and item's span fields.

use std::path::Path;
use std::time::{Duration, Instant};

use cxpipe::sim::{SimConfig, SizeDistribution};

use crate::download::{listing, write_config};
use crate::harness::{Sim, TestEnv};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scripts/download_recordings.rhai"
);

/// POSTs `body` to a simulator path.
fn post_json(sim: &Sim, path: &str, body: serde_json::Value) {
    let url = format!("{}{path}", sim.base_url);
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    reqwest::Client::new()
                        .post(&url)
                        .json(&body)
                        .send()
                        .await
                        .unwrap()
                        .error_for_status()
                        .unwrap();
                })
        })
        .join()
        .unwrap()
    })
}

fn processing(sim: &Sim) -> usize {
    let truth = sim.get_json("/_sim/truth/recordings?limit=1000");
    truth["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "Processing")
        .count()
}

#[test]
fn recordings_stuck_processing_are_left_deferred_and_the_next_run_finishes_them_once() {
    let sim = Sim::start(SimConfig {
        seed: 7,
        recordings: 30,
        sizes: SizeDistribution {
            min: 20_000,
            max: 60_000,
            log_uniform: false,
        },
        processing_share: 0.25,
        // Far longer than any run here: only the clock control makes them ready.
        processing_delay: Duration::from_secs(24 * 3600),
        archived_share: 0.0,
        expired_share: 0.0,
        newest_at: chrono::Utc::now().timestamp() - 600,
        span: Duration::from_secs(10 * 24 * 3600),
        ..SimConfig::default()
    });
    let stuck = processing(&sim);
    assert!(
        stuck >= 3,
        "the dataset should have stuck recordings: {stuck}"
    );
    let env = TestEnv::new();
    // processing_poll = 1s: re-polls after 1, 2, 4 and 8 s, then a 16 s deferral is more
    // than defer_linger (10 s) and the run ends. The old runner waited for every deferral
    // within defer_max_wait (10 minutes).
    let config = write_config(
        &env,
        &sim.base_url,
        &sim.credentials.client_id,
        &sim.credentials.client_secret,
        "",
    );
    let run = || {
        env.run(
            Path::new(SCRIPT),
            &["--config", config.to_str().unwrap(), "--tenant", "sim"],
        )
    };
    let started = Instant::now();
    let first = run();
    let took = started.elapsed();
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let s = &first.json()["summary"];
    assert!(
        took < Duration::from_secs(60),
        "the first run took {took:?}: {s}"
    );
    let n = |s: &serde_json::Value, k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{k}: {s}"));
    let done_first = n(s, "done");
    assert_eq!(done_first + n(s, "skipped"), (30 - stuck) as u64, "{s}");
    assert_eq!(s["deferred"].as_u64(), Some(stuck as u64), "{s}");
    assert_eq!(s["deferred_left"].as_u64(), Some(stuck as u64), "{s}");
    let next_due = chrono::DateTime::parse_from_rfc3339(s["next_due"].as_str().unwrap()).unwrap();
    let counts = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(env.item_counts());
    assert_eq!(
        counts.get("deferred").copied(),
        Some(stuck as i64),
        "{counts:?}"
    );

    // The recordings become ready; once they fall due (as a daemon would wake the
    // pipeline at next_due), the next run takes them from the ledger: its discover emits
    // nothing new (the checkpoint moved past them).
    post_json(
        &sim,
        "/_sim/clock/advance",
        serde_json::json!({ "secs": 48 * 3600 }),
    );
    assert_eq!(processing(&sim), 0);
    let wait = (next_due.timestamp_millis() - chrono::Utc::now().timestamp_millis()).max(0) as u64;
    assert!(wait <= 40_000, "next_due is {wait} ms away");
    std::thread::sleep(Duration::from_millis(wait + 200));
    let second = run();
    assert_eq!(second.code, 0, "{}\n{}", second.stdout, second.stderr);
    let s = &second.json()["summary"];
    assert_eq!(
        (
            n(s, "resumed"),
            n(s, "admitted"),
            n(s, "done") + n(s, "skipped")
        ),
        (stuck as u64, 0, stuck as u64),
        "{s}"
    );
    let done = done_first + n(s, "done");
    assert_eq!(s["deferred_left"].as_u64(), Some(0), "{s}");
    assert!(s["next_due"].is_null(), "{s}");

    // Every recording stored once; each streamed once, plus one resumption per stream the
    // simulator cut short (its default faults stay on).
    let stored = listing(&env.path().join("objects"))
        .into_keys()
        .filter(|k| k.starts_with("recordings/") && !k.ends_with(".manifest.json"))
        .count();
    assert_eq!(stored as u64, done);
    assert!(done > stuck as u64, "most recordings have media: {done}");
    let stats = sim.get_json("/_sim/stats");
    let streams = stats["media_streams"].as_u64().unwrap_or(0);
    let cut = stats["truncations"].as_u64().unwrap_or(0) + stats["resets"].as_u64().unwrap_or(0);
    assert!(
        (done..=done + cut).contains(&streams),
        "{done} stored, {streams} streams, {cut} cut short: {stats}"
    );
}

#[test]
fn json_log_lines_of_a_worker_carry_the_run_and_item_span_fields() {
    let env = TestEnv::new();
    let script = env.write(
        "logs.rhai",
        "const OPTIONS = #{ max_attempts: 1 };\n\
         fn discover(ctx) { ctx.emit(\"the-item\", 1); }\n\
         fn process(ctx, item) { ctx.log(\"warn\", \"looking at it\"); throw \"it broke\"; }\n",
    );
    let state = env.state_dir();
    let ran: crate::harness::Ran = env
        .command()
        .env("CXPIPE_LOG", "warn")
        .args([
            "--log-format",
            "json",
            "run",
            script.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ])
        .output()
        .unwrap()
        .into();
    let lines: Vec<serde_json::Value> = ran
        .stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let worker = lines
        .iter()
        .find(|l| l["fields"]["message"] == "item quarantined")
        .unwrap_or_else(|| panic!("no quarantine line in:\n{}", ran.stderr));
    let spans = worker["spans"].as_array().unwrap();
    let run = spans.iter().find(|s| s["name"] == "run").unwrap();
    assert_eq!(run["pipeline"], "logs", "{worker}");
    assert_eq!(run["tenant"], "default", "{worker}");
    assert!(
        run["run_id"].as_str().is_some_and(|id| id.len() == 36),
        "{worker}"
    );
    assert_eq!(worker["span"]["name"], "item", "{worker}");
    assert_eq!(worker["span"]["item_key"], "the-item", "{worker}");
    assert_eq!(worker["span"]["attempt"], 1, "{worker}");
    // The script's own log line, from the same worker thread, is the item's too.
    let logged = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("looking at it"))
        })
        .unwrap_or_else(|| panic!("no script log line in:\n{}", ran.stderr));
    assert_eq!(logged["span"]["item_key"], "the-item", "{logged}");
}
