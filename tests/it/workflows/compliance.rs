//! Seed 001: `scripts/compliance_export.rhai` against the simulator with faults on (429s,
//! 5xx, media resets, 3-second tokens, export jobs that fail), checked against the
//! simulator's own records (`/_sim/truth/exports`, `/_sim/truth/legal-hold`,
//! `/_sim/truth/recordings`), the store, the ledger and the audit chain; a re-run does no new
//! work, and one under a changed policy flushes the cached job metadata.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cxpipe::ledger::{ItemFilter, ItemRow, Ledger};
use cxpipe::sim::{Faults, SimConfig, SizeDistribution};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::harness::{Sim, TestEnv};

pub const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scripts/compliance_export.rhai"
);

/// A hostile seed-001 tenant: throttling, 5xx, resets mid-download, 3-second tokens, export
/// jobs that take a second and fail ("resubmit the job") one time in two.
pub(super) fn hostile(seed: u64, recordings: usize) -> SimConfig {
    SimConfig {
        seed,
        recordings,
        sizes: SizeDistribution {
            min: 10_000,
            max: 200_000,
            log_uniform: false,
        },
        processing_share: 0.0,
        archived_share: 0.0,
        expired_share: 0.0,
        faults: Faults {
            token_ttl: Duration::from_secs(3),
            error_rate: 0.08,
            throttle_rate: 0.08,
            reset_rate: 0.1,
            job_duration: Duration::from_secs(1),
            job_failure_rate: 0.5,
            ..Faults::default()
        },
        ..SimConfig::default()
    }
}

/// A config for the simulator tenant asking for `ids`; `extra` is appended to its params.
pub(super) fn write_config(env: &TestEnv, sim: &Sim, ids: &[String], extra: &str) -> PathBuf {
    env.write("secrets/client_secret", &sim.credentials.client_secret);
    env.write(
        "cxpipe.toml",
        &format!(
            r#"
[tenants.sim]
base_url = "{}"
auth = {{ kind = "client_credentials", token_url = "/api/v2/oauth/token", client_id = "{}", client_secret = {{ file = "secrets/client_secret" }} }}
[tenants.sim.params]
interaction_ids = {ids:?}
format = "wav"
jurisdiction = "US-CA"
date_start = "2023-06-01T00:00:00.000Z"
date_end = "2023-06-30T23:59:59.999Z"
batch_size = 3
max_jobs = 12
poll_every = "200ms"
poll_max = "1s"
job_timeout = "60s"
{extra}
[storage.default]
uri = "fs://{}"
"#,
            sim.base_url,
            sim.credentials.client_id,
            env.path().join("objects").display()
        ),
    )
}

pub(super) fn run(env: &TestEnv, config: &Path) -> crate::harness::Ran {
    env.run(
        Path::new(SCRIPT),
        &["--config", config.to_str().unwrap(), "--tenant", "sim"],
    )
}

fn tokio_block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

pub(super) fn ledger_items(env: &TestEnv) -> BTreeMap<String, ItemRow> {
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

fn audit_rows(env: &TestEnv, run_id: &str) -> Vec<cxpipe::ledger::AuditEntry> {
    tokio_block(async {
        let ledger = Ledger::open_dir(&env.state_dir()).await.unwrap();
        ledger.audit_of_run(run_id).await.unwrap()
    })
}

fn array(value: &Value, field: &str) -> Vec<Value> {
    value[field].as_array().unwrap().clone()
}

/// `cxpipe audit verify` over the test's state directory.
pub fn assert_audit_verifies(env: &TestEnv) {
    let verify = env.cxpipe(&[
        "audit",
        "verify",
        "--state",
        env.state_dir().to_str().unwrap(),
    ]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
}

#[test]
fn compliance_export_under_faults_stores_each_recording_once_verified_and_notifies_legal_hold() {
    let sim = Sim::start(hostile(11, 30));
    let env = TestEnv::new();
    let truth = array(
        &sim.get_json("/_sim/truth/recordings?limit=1000"),
        "recordings",
    );
    // 20 recordings, asked for in 7 batches of at most 3 (one id twice: it is exported once).
    let mut ids: Vec<String> = truth
        .iter()
        .take(20)
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.push(ids[4].clone());
    let config = write_config(&env, &sim, &ids, "");
    let wanted: BTreeSet<String> = ids.iter().cloned().collect();

    let first = run(&env, &config);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let out = first.json();
    let (summary, report) = (&out["summary"], &out["report"]);

    // Ledger: one item per batch, all done, covering every id once.
    let items = ledger_items(&env);
    assert_eq!(items.len(), 7, "{items:?}");
    assert!(items.values().all(|r| r.state == "done"), "{items:?}");

    // Simulator: each id is in exactly one COMPLETED export job; failed jobs were resubmitted.
    let jobs = array(&sim.get_json("/_sim/truth/exports"), "jobs");
    let mut completed_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut failed = 0;
    for job in &jobs {
        assert!(
            job["ids"].as_array().unwrap().len() <= 3,
            "batched to the limit: {job}"
        );
        match job["phase"].as_str().unwrap() {
            "COMPLETED" => {
                for id in job["ids"].as_array().unwrap() {
                    completed_of
                        .entry(id.as_str().unwrap().to_string())
                        .or_default()
                        .push(job["jobId"].as_str().unwrap().to_string());
                }
            }
            "FAILED" => failed += 1,
            other => panic!("job left {other}: {job}"),
        }
    }
    assert_eq!(
        completed_of.keys().cloned().collect::<BTreeSet<_>>(),
        wanted
    );
    assert!(
        completed_of.values().all(|jobs| jobs.len() == 1),
        "{completed_of:?}"
    );
    assert!(failed >= 1, "half the jobs fail: {jobs:?}");
    assert_eq!(jobs.len(), 7 + failed);

    // Store: every file, its bytes' SHA-256 equal to the simulator's, with a manifest.
    for id in &wanted {
        let rec = truth.iter().find(|r| r["id"] == id.as_str()).unwrap();
        let path = env.path().join(format!(
            "objects/compliance/US-CA/{id}.{}",
            rec["format"].as_str().unwrap()
        ));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            rec["media"]["combined"]["sha256"].as_str().unwrap(),
            "{id}"
        );
        assert!(
            Path::new(&format!("{}.manifest.json", path.display())).exists(),
            "{path:?}"
        );
    }

    // Legal hold: one notification per batch, naming its completed job and stored paths.
    let notes = array(&sim.get_json("/_sim/truth/legal-hold"), "notifications");
    assert_eq!(notes.len(), 7, "{notes:?}");
    let mut notified = BTreeSet::new();
    for note in &notes {
        assert_eq!(note["status"], "COMPLETED", "{note}");
        assert_eq!(note["complianceFlags"]["jurisdiction"], "US-CA");
        let job = note["jobId"].as_str().unwrap();
        for path in note["mediaPaths"].as_array().unwrap() {
            let id = path
                .as_str()
                .unwrap()
                .strip_prefix("compliance/US-CA/")
                .unwrap()
                .split('.')
                .next()
                .unwrap()
                .to_string();
            assert_eq!(completed_of[&id], vec![job.to_string()], "{note}");
            assert!(notified.insert(id), "{note}");
        }
    }
    assert_eq!(notified, wanted);

    // Audit: one CUSTODY record per file, every failed job recorded; the chain verifies.
    let run_id = summary["run_id"].as_str().unwrap();
    let audit = audit_rows(&env, run_id);
    let kinds = |kind: &str| audit.iter().filter(|e| e.kind == kind).collect::<Vec<_>>();
    let custody: Vec<String> = kinds("CUSTODY")
        .iter()
        .map(|e| e.data["recordingId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(custody.len(), wanted.len(), "{custody:?}");
    assert_eq!(custody.iter().cloned().collect::<BTreeSet<_>>(), wanted);
    for e in kinds("CUSTODY") {
        let id = e.data["recordingId"].as_str().unwrap();
        let rec = truth.iter().find(|r| r["id"] == id).unwrap();
        assert_eq!(
            e.data["sha256"], rec["media"]["combined"]["sha256"],
            "{e:?}"
        );
        assert_eq!(e.data["checksumVerified"], true);
        assert_eq!(e.data["jobId"].as_str().unwrap(), completed_of[id][0]);
    }
    assert_eq!(kinds("EXPORT_FAILED").len(), failed);
    assert_eq!(kinds("EXPORT_SUBMITTED").len(), jobs.len());
    assert_eq!(kinds("LEGAL_HOLD_NOTIFIED").len(), 7);
    assert_audit_verifies(&env);

    // The report agrees with the simulator and the ledger.
    assert_eq!(report["batches"]["exported"].as_u64(), Some(7), "{report}");
    assert_eq!(report["jobs"]["completed"].as_u64(), Some(7), "{report}");
    assert_eq!(
        report["jobs"]["failed"].as_u64(),
        Some(failed as u64),
        "{report}"
    );
    assert_eq!(
        report["jobs"]["submitted"].as_u64(),
        Some(jobs.len() as u64)
    );
    let m = &report["metrics"];
    assert_eq!(m["requestsValidated"].as_u64(), Some(1), "{report}");
    assert_eq!(m["filesValidated"].as_u64(), Some(wanted.len() as u64));
    assert_eq!(m["legalHoldNotified"].as_u64(), Some(7));
    assert!(
        m["averageLatencyMs"].as_f64().unwrap() >= 1000.0,
        "jobs take a second: {report}"
    );
    let stored = env
        .path()
        .join(format!("objects/reports/compliance/{run_id}.json"));
    let stored: Value = serde_json::from_slice(&std::fs::read(&stored).unwrap()).unwrap();
    assert_eq!(stored["jobs"], report["jobs"]);

    // The faults happened and were survived.
    let stats = sim.get_json("/_sim/stats");
    for counter in ["throttled_429", "server_errors_5xx"] {
        assert!(
            stats[counter].as_u64().unwrap() > 0,
            "no {counter}: {stats}"
        );
    }
    assert!(stats["tokens_issued"].as_u64().unwrap() >= 2, "{stats}");

    // A re-run under a changed policy does no new work and flushes the job cache.
    let config = write_config(
        &env,
        &sim,
        &ids,
        r#"jurisdictions = ["US-CA", "US-VA", "EU-DE", "GB-EN", "FR-IDF"]"#,
    );
    let again = run(&env, &config);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let out = again.json();
    let s = &out["summary"];
    assert_eq!(
        (s["done"].as_u64(), s["admitted"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    let flushed = audit_rows(&env, s["run_id"].as_str().unwrap())
        .into_iter()
        .filter(|e| e.kind == "CACHE_INVALIDATED")
        .collect::<Vec<_>>();
    assert_eq!(flushed.len(), 1, "{flushed:?}");
    assert_eq!(flushed[0].data["entries"].as_u64(), Some(7), "{flushed:?}");
    assert_eq!(
        array(&sim.get_json("/_sim/truth/exports"), "jobs").len(),
        jobs.len()
    );
    assert_eq!(
        array(&sim.get_json("/_sim/truth/legal-hold"), "notifications").len(),
        7
    );
    // The same policy again: nothing to flush.
    let third = run(&env, &config);
    let out = third.json();
    let run3 = out["summary"]["run_id"].as_str().unwrap();
    assert!(
        audit_rows(&env, run3)
            .iter()
            .all(|e| e.kind != "CACHE_INVALIDATED")
    );
    assert_audit_verifies(&env);
}

#[test]
fn an_invalid_request_is_rejected_with_every_problem_named_before_any_call() {
    let sim = Sim::start(hostile(12, 3));
    let env = TestEnv::new();
    let config = write_config(&env, &sim, &[], "");
    // Replace the request with one that breaks every rule.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("format = \"wav\"", "format = \"flac\"")
        .replace("jurisdiction = \"US-CA\"", "jurisdiction = \"FR-IDF\"")
        .replace("2023-06-01T00:00:00.000Z", "2021-03-01T00:00:00Z")
        .replace("2023-06-30T23:59:59.999Z", "June 30th");
    std::fs::write(&config, text).unwrap();
    let ran = run(&env, &config);
    assert_ne!(ran.code, 0, "{}", ran.stdout);
    for problem in [
        "interaction_ids must be a non-empty list",
        "format \"flac\" is not one of",
        "jurisdiction \"FR-IDF\" is outside the authorised compliance scope",
        "date_start 2021-03-01T00:00:00Z is before the retention policy's earliest date",
        "date_end \"June 30th\" is not an RFC 3339 time",
    ] {
        assert!(ran.stderr.contains(problem), "{problem}: {}", ran.stderr);
    }
    let stats = sim.get_json("/_sim/stats");
    assert_eq!(stats["tokens_issued"].as_u64(), Some(0), "{stats}");
    let called: Vec<&String> = stats["requests"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|route| !route.contains(" /_sim/"))
        .collect();
    assert!(called.is_empty(), "no call before validation: {called:?}");
    assert!(ledger_items(&env).is_empty());
}

/// `--dry-run`: one export POST per batch is listed, none is sent, and each batch ends
/// deferred (there is no job to poll), not quarantined; the real ledger is untouched.
#[test]
fn a_dry_run_lists_the_export_posts_and_quarantines_nothing() {
    let sim = Sim::start(SimConfig {
        faults: Faults::none(),
        ..hostile(14, 9)
    });
    let env = TestEnv::new();
    let truth = array(
        &sim.get_json("/_sim/truth/recordings?limit=100"),
        "recordings",
    );
    let ids: Vec<String> = truth
        .iter()
        .take(7)
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let config = write_config(&env, &sim, &ids, "");
    let ran = env.run(
        Path::new(SCRIPT),
        &[
            "--config",
            config.to_str().unwrap(),
            "--tenant",
            "sim",
            "--dry-run",
        ],
    );
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let out = ran.json();
    let summary = &out["summary"];
    assert_eq!(summary["quarantined"], 0, "{out:#}");
    assert_eq!(summary["deferred"], 3, "7 ids in batches of 3: {out:#}");
    let posts: Vec<&Value> = out["dry_run"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "api" && c["method"] == "POST")
        .collect();
    assert_eq!(posts.len(), 3, "{out:#}");
    let exports = sim.get_json("/_sim/truth/exports");
    assert!(
        exports["jobs"].as_array().is_none_or(|j| j.is_empty()),
        "no export job reached the server: {exports:#}"
    );
    assert!(
        ledger_items(&env).is_empty(),
        "the real ledger is untouched"
    );
}
