//! Seed 000: `scripts/retention_lifecycle.rhai` against the simulator with faults on
//! (429s, 5xx, 3-second tokens, failed archival jobs, duplicates, legal holds), checked
//! against the simulator's own counters (`/_sim/truth/retention`), the ledger and the audit
//! chain; a re-run does no new work; a run killed mid-way and re-run repeats nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cxpipe::ledger::{ItemFilter, ItemRow, Ledger};
use cxpipe::sim::{Faults, SimConfig, SizeDistribution};
use serde_json::Value;

use crate::harness::{Sim, TestEnv};

pub const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scripts/retention_lifecycle.rhai"
);
const PIPELINE: &str = "retention_lifecycle";
const POLICY_DAYS: u64 = 365;

/// A hostile seed-000 tenant: throttling, 5xx, 3-second tokens, archival jobs that take a
/// second and fail one time in four.
fn hostile(seed: u64, recordings: usize) -> SimConfig {
    SimConfig {
        seed,
        recordings,
        sizes: SizeDistribution {
            min: 10_000,
            max: 400_000,
            log_uniform: false,
        },
        processing_share: 0.0,
        archived_share: 0.08,
        expired_share: 0.05,
        faults: Faults {
            token_ttl: Duration::from_secs(3),
            error_rate: 0.08,
            throttle_rate: 0.08,
            job_duration: Duration::from_secs(1),
            job_failure_rate: 0.25,
            ..Faults::default()
        },
        ..SimConfig::default()
    }
}

/// A config for the simulator tenant; `extra` is appended to its params.
fn write_config(env: &TestEnv, sim: &Sim, extra: &str) -> PathBuf {
    env.write("secrets/client_secret", &sim.credentials.client_secret);
    env.write(
        "cxpipe.toml",
        &format!(
            r#"
[tenants.sim]
base_url = "{}"
auth = {{ kind = "client_credentials", token_url = "/api/v2/oauth/token", client_id = "{}", client_secret = {{ file = "secrets/client_secret" }} }}
[tenants.sim.params]
poll_every = "300ms"
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

fn run(env: &TestEnv, config: &Path) -> crate::harness::Ran {
    env.run(
        Path::new(SCRIPT),
        &["--config", config.to_str().unwrap(), "--tenant", "sim"],
    )
}

/// `/_sim/truth/retention` for every recording.
fn truth(sim: &Sim) -> Vec<Value> {
    sim.get_json("/_sim/truth/retention?limit=1000")["recordings"]
        .as_array()
        .unwrap()
        .clone()
}

/// What the guide asks for each recording.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    /// Not `completed`: never listed, never touched.
    NotListed,
    /// Same signature as an earlier listed recording.
    DuplicateOf(String),
    /// No duration (a call shorter than a second) or no size: nothing to retain.
    Invalid,
    /// Under legal hold with a retention that differs: one refused PUT, no job.
    LegalHold,
    /// Retention set (one PUT when it differed) and archived once.
    Archive { put: bool },
}

fn expected(truth: &[Value]) -> BTreeMap<String, Expect> {
    let mut first_of_group: BTreeMap<String, String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for rec in truth {
        let id = rec["id"].as_str().unwrap().to_string();
        let expect = if rec["status"] != "completed" {
            Expect::NotListed
        } else {
            let group = rec["duplicateOf"].as_str().unwrap_or(&id).to_string();
            let differs = rec["initialRetentionDays"].as_u64() != Some(POLICY_DAYS);
            match first_of_group.get(&group) {
                Some(first) => Expect::DuplicateOf(first.clone()),
                None => {
                    first_of_group.insert(group, id.clone());
                    if rec["duration"] == 0 || rec["fileSize"] == 0 {
                        Expect::Invalid
                    } else if rec["legalHold"] == true && differs {
                        Expect::LegalHold
                    } else {
                        Expect::Archive { put: differs }
                    }
                }
            }
        };
        out.insert(id, expect);
    }
    out
}

fn ledger_items(env: &TestEnv) -> BTreeMap<String, ItemRow> {
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

fn tokio_block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn skip_reason(row: &ItemRow) -> String {
    let result: Value = serde_json::from_str(row.result.as_deref().unwrap_or("null")).unwrap();
    result["skipped"].as_str().unwrap_or_default().to_string()
}

/// Checks every recording against the truth. `uncertain` recordings (a submission cut off
/// by a kill) may hold one extra archival job. Returns (archived, quarantined) counts.
fn assert_lifecycle(
    truth: &[Value],
    items: &BTreeMap<String, ItemRow>,
    uncertain: &BTreeSet<String>,
) -> (usize, usize) {
    let expect = expected(truth);
    let (mut archived, mut quarantined) = (0, 0);
    for rec in truth {
        let id = rec["id"].as_str().unwrap();
        let applied = rec["retentionApplied"].as_u64().unwrap();
        let refused = rec["retentionRefused"].as_u64().unwrap();
        let jobs: Vec<&str> = rec["archivalJobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["status"].as_str().unwrap())
            .collect();
        let row = items.get(id);
        let ctx = format!("{id}: {rec} / {row:?}");
        match &expect[id] {
            Expect::NotListed => {
                assert!(row.is_none(), "{ctx}");
                assert_eq!((applied, refused, jobs.len()), (0, 0, 0), "{ctx}");
            }
            Expect::DuplicateOf(_) => {
                let row = row.expect("duplicates are in the ledger");
                assert_eq!(row.state, "skipped", "{ctx}");
                assert_eq!(skip_reason(row), "duplicate recording", "{ctx}");
                assert_eq!((applied, refused, jobs.len()), (0, 0, 0), "{ctx}");
            }
            Expect::Invalid => {
                let row = row.expect("invalid recordings are in the ledger");
                assert_eq!(skip_reason(row), "no duration or file size", "{ctx}");
                assert_eq!((applied, refused, jobs.len()), (0, 0, 0), "{ctx}");
            }
            Expect::LegalHold => {
                let row = row.expect("held recordings are in the ledger");
                assert_eq!(
                    (row.state.as_str(), skip_reason(row).as_str()),
                    ("skipped", "legal hold"),
                    "{ctx}"
                );
                assert_eq!(
                    (applied, refused, jobs.len()),
                    (0, 1, 0),
                    "one 409, never retried: {ctx}"
                );
            }
            Expect::Archive { put } => {
                let row = row.expect("eligible recordings are in the ledger");
                assert_eq!(
                    applied,
                    u64::from(*put),
                    "retention PUT once if needed: {ctx}"
                );
                assert_eq!(refused, 0, "{ctx}");
                assert_eq!(rec["retentionDays"].as_u64(), Some(POLICY_DAYS), "{ctx}");
                let completed = jobs.iter().filter(|s| **s == "COMPLETED").count();
                let extra = usize::from(uncertain.contains(id));
                match row.state.as_str() {
                    "done" => {
                        archived += 1;
                        assert!((1..=1 + extra).contains(&completed), "archived once: {ctx}");
                        assert!(
                            jobs.iter().all(|s| *s == "COMPLETED" || *s == "FAILED"),
                            "no job left running: {ctx}"
                        );
                        assert!(jobs.len() <= 3 + extra, "{ctx}");
                        let result: Value =
                            serde_json::from_str(row.result.as_deref().unwrap()).unwrap();
                        let last_completed = rec["archivalJobs"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .rfind(|j| j["status"] == "COMPLETED")
                            .unwrap();
                        assert_eq!(result["jobId"], last_completed["jobId"], "{ctx}");
                    }
                    "quarantined" => {
                        quarantined += 1;
                        assert!(jobs.len() >= 3 && completed == 0, "{ctx}");
                        assert!(
                            row.last_error
                                .as_deref()
                                .unwrap_or_default()
                                .contains("destination write failed"),
                            "failureReason kept: {ctx}"
                        );
                    }
                    other => panic!("eligible recording left {other}: {ctx}"),
                }
            }
        }
    }
    (archived, quarantined)
}

fn audit_rows(env: &TestEnv, run_id: &str) -> Vec<cxpipe::ledger::AuditEntry> {
    tokio_block(async {
        let ledger = Ledger::open_dir(&env.state_dir()).await.unwrap();
        ledger.audit_of_run(run_id).await.unwrap()
    })
}

fn counts(truth: &[Value], field: &str) -> Vec<(String, u64)> {
    truth
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r[field].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn job_ids(truth: &[Value]) -> Vec<String> {
    truth
        .iter()
        .flat_map(|r| r["archivalJobs"].as_array().unwrap().clone())
        .map(|j| j["jobId"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn retention_lifecycle_under_faults_archives_each_eligible_recording_once_and_reports_it() {
    let sim = Sim::start(hostile(7, 90));
    let env = TestEnv::new();
    let config = write_config(&env, &sim, "");

    let first = run(&env, &config);
    let out = first.json();
    let (summary, report) = (&out["summary"], &out["report"]);
    let truth = truth(&sim);
    let expect = expected(&truth);
    let count = |f: fn(&Expect) -> bool| expect.values().filter(|e| f(e)).count();
    assert!(
        count(|e| matches!(e, Expect::DuplicateOf(_))) >= 1
            && count(|e| *e == Expect::LegalHold) >= 1
            && count(|e| matches!(e, Expect::Archive { .. })) >= 40,
        "the dataset exercises duplicates and legal holds: {expect:?}"
    );
    let items = ledger_items(&env);
    let (archived, quarantined) = assert_lifecycle(&truth, &items, &BTreeSet::new());
    assert_eq!(
        first.code,
        if quarantined > 0 { 1 } else { 0 },
        "exit 1 exactly when a recording could not be archived\n{}\n{}",
        first.stdout,
        first.stderr
    );

    // The report agrees with the ledger and the simulator.
    let metrics = &report["archivalMetrics"];
    let all_jobs: Vec<&str> = truth
        .iter()
        .flat_map(|r| r["archivalJobs"].as_array().unwrap())
        .map(|j| j["status"].as_str().unwrap())
        .collect();
    let failed_jobs = all_jobs.iter().filter(|s| **s == "FAILED").count();
    assert!(failed_jobs > 0, "some archival jobs failed: {all_jobs:?}");
    assert_eq!(
        metrics["successfulJobs"].as_u64(),
        Some(archived as u64),
        "{report}"
    );
    assert_eq!(
        metrics["failedJobs"].as_u64(),
        Some(failed_jobs as u64),
        "{report}"
    );
    assert_eq!(
        metrics["totalJobs"].as_u64(),
        Some(all_jobs.len() as u64),
        "{report}"
    );
    let bytes: u64 = items
        .values()
        .filter(|r| r.state == "done")
        .map(|r| {
            serde_json::from_str::<Value>(r.result.as_deref().unwrap()).unwrap()
                ["archivedSizeBytes"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert!(bytes > 0);
    assert_eq!(metrics["archivedBytes"].as_u64(), Some(bytes), "{report}");
    let mb = (bytes as f64 / 1_048_576.0 * 100.0).round() / 100.0;
    assert_eq!(metrics["estimatedStorageMB"].as_f64(), Some(mb), "{report}");
    let lifecycle = &report["lifecycle"];
    let puts: u64 = truth
        .iter()
        .map(|r| r["retentionApplied"].as_u64().unwrap())
        .sum();
    assert_eq!(
        lifecycle["retentionApplied"].as_u64(),
        Some(puts),
        "{report}"
    );
    assert_eq!(
        lifecycle["legalHolds"].as_u64(),
        Some(count(|e| *e == Expect::LegalHold) as u64)
    );
    assert_eq!(
        lifecycle["duplicates"].as_u64(),
        Some(count(|e| matches!(e, Expect::DuplicateOf(_))) as u64)
    );
    assert_eq!(lifecycle["archived"].as_u64(), Some(archived as u64));
    assert_eq!(
        lifecycle["recordingsListed"].as_u64(),
        Some(items.len() as u64),
        "every listed recording is in the ledger: {report}"
    );
    assert_eq!(
        report["complianceStatus"], "REVIEW_REQUIRED",
        "25% of jobs fail"
    );
    let rejected = report["rejectedPolicies"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "the 180-day PCI policy: {report}");
    assert_eq!(report["policy"]["id"], "pol-001");

    // Every lifecycle action is in the audit chain, and the report counts them.
    let run_id = summary["run_id"].as_str().unwrap();
    let audit = audit_rows(&env, run_id);
    assert_eq!(
        report["totalAuditEvents"].as_u64(),
        Some(audit.len() as u64),
        "{report}"
    );
    let kinds = |kind: &str| audit.iter().filter(|e| e.kind == kind).collect::<Vec<_>>();
    assert_eq!(kinds("ARCHIVAL_COMPLETED").len(), archived);
    assert_eq!(kinds("ARCHIVAL_FAILED").len(), failed_jobs);
    assert_eq!(
        kinds("LEGAL_HOLD").len(),
        count(|e| *e == Expect::LegalHold)
    );
    assert_eq!(kinds("RETENTION_APPLIED").len() as u64, puts);
    assert_eq!(kinds("POLICY_REJECTED").len(), 1);
    for dup in kinds("DUPLICATE_MARKED") {
        let id = dup.data["recordingId"].as_str().unwrap();
        assert_eq!(
            expect[id],
            Expect::DuplicateOf(dup.data["duplicateOf"].as_str().unwrap().to_string())
        );
    }
    assert!(kinds("ARCHIVAL_FAILED").iter().all(|e| {
        e.data["failureReason"]
            .as_str()
            .unwrap()
            .contains("destination write failed")
    }));
    let verify = env.cxpipe(&[
        "audit",
        "verify",
        "--state",
        env.state_dir().to_str().unwrap(),
    ]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);

    // The report is stored with a manifest.
    let stored = env
        .path()
        .join(format!("objects/reports/retention/{run_id}.json"));
    let stored: Value = serde_json::from_slice(&std::fs::read(&stored).unwrap()).unwrap();
    assert_eq!(stored["archivalMetrics"], report["archivalMetrics"]);

    // The faults happened and were survived.
    let stats = sim.get_json("/_sim/stats");
    for counter in ["throttled_429", "server_errors_5xx"] {
        assert!(
            stats[counter].as_u64().unwrap() > 0,
            "no {counter}: {stats}"
        );
    }
    assert!(stats["tokens_issued"].as_u64().unwrap() >= 2, "{stats}");

    // A re-run does no new work: no PUT, no job, nothing processed.
    let again = run(&env, &config);
    assert_eq!(
        again.code, 0,
        "nothing failed in this run: {}",
        again.stderr
    );
    let s = &again.json()["summary"];
    assert_eq!(
        (s["done"].as_u64(), s["admitted"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    let after = self::truth(&sim);
    assert_eq!(
        counts(&after, "retentionApplied"),
        counts(&truth, "retentionApplied")
    );
    assert_eq!(
        counts(&after, "retentionRefused"),
        counts(&truth, "retentionRefused")
    );
    assert_eq!(job_ids(&after), job_ids(&truth));
}

#[test]
fn a_policy_below_its_framework_minimum_is_reported_and_never_applied() {
    let sim = Sim::start(SimConfig {
        faults: Faults::none(),
        ..hostile(3, 30)
    });
    let env = TestEnv::new();
    // pol-004 keeps PCI recordings 180 days; GDPR's minimum raised to 120 rejects pol-003 too.
    let config = write_config(
        &env,
        &sim,
        "policy = \"pol-004\"\n[tenants.sim.params.framework_minimums]\nGDPR = 120",
    );
    let ran = run(&env, &config);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let report = &ran.json()["report"];
    let truth = truth(&sim);
    assert!(
        truth.iter().all(|r| r["retentionApplied"] == 0
            && r["retentionRefused"] == 0
            && r["archivalJobs"].as_array().unwrap().is_empty()),
        "nothing applied, nothing archived"
    );
    let listed = truth.iter().filter(|r| r["status"] == "completed").count();
    let items = ledger_items(&env);
    assert_eq!(items.len(), listed);
    let refused = items
        .values()
        .filter(|r| skip_reason(r) == "policy below framework minimum")
        .count();
    let duplicates = items
        .values()
        .filter(|r| skip_reason(r) == "duplicate recording")
        .count();
    assert_eq!(refused + duplicates, listed, "{items:?}");
    let rejected: BTreeSet<&str> = report["rejectedPolicies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(rejected, BTreeSet::from(["pol-003", "pol-004"]), "{report}");
    assert_eq!(report["frameworkMinimums"]["GDPR"], 120);
    assert_eq!(report["frameworkMinimums"]["HIPAA"], 2190);
    assert_eq!(report["complianceStatus"], "REVIEW_REQUIRED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_way_then_rerun_repeats_no_put_and_archives_once() {
    let sim = Sim::start(SimConfig {
        faults: Faults {
            job_failure_rate: 0.1,
            ..hostile(11, 80).faults
        },
        ..hostile(11, 80)
    });
    let env = std::sync::Arc::new(TestEnv::new());
    let config = write_config(&env, &sim, "");
    let state = env.state_dir();
    let mut child = env
        .command()
        .args(["run", SCRIPT, "--config", config.to_str().unwrap()])
        .args(["--tenant", "sim", "--state", state.to_str().unwrap()])
        .spawn()
        .unwrap();
    let sim = std::sync::Arc::new(sim);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let jobs = tokio::task::spawn_blocking({
            let sim = sim.clone();
            move || job_ids(&truth(&sim)).len()
        })
        .await
        .unwrap();
        if jobs >= 15 {
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

    // Submissions cut off between the POST and recording the job id: the only places a
    // second job may exist (the script audits them as ARCHIVAL_RESUBMITTED).
    let uncertain: BTreeSet<String> = {
        let ledger = Ledger::open_dir(&state).await.unwrap();
        let mut out = BTreeSet::new();
        for key in ledger.kv_keys(PIPELINE, "sim", "lifecycle/").await.unwrap() {
            let value = ledger.kv_get(PIPELINE, "sim", &key).await.unwrap().unwrap();
            if serde_json::from_str::<Value>(&value).unwrap()["step"] == "submitting" {
                out.insert(key.trim_start_matches("lifecycle/").to_string());
            }
        }
        out
    };
    assert!(
        uncertain.len() <= 4,
        "at most one per worker: {uncertain:?}"
    );

    let rerun = tokio::task::spawn_blocking({
        let (env, config) = (env.clone(), config.clone());
        move || run(&env, &config)
    })
    .await
    .unwrap();
    let (truth, items) = tokio::task::spawn_blocking({
        let (env, sim) = (env.clone(), sim.clone());
        move || (truth(&sim), ledger_items(&env))
    })
    .await
    .unwrap();
    let (archived, quarantined) = assert_lifecycle(&truth, &items, &uncertain);
    assert_eq!(
        rerun.code,
        if quarantined > 0 { 1 } else { 0 },
        "{}",
        rerun.stderr
    );
    assert!(archived >= 30, "{archived}");
    let verify = env.cxpipe(&["audit", "verify", "--state", state.to_str().unwrap()]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
}
