//! The first vertical slice (seed 002): `scripts/download_recordings.rhai` run by the real
//! binary against the simulator with faults on, checked against the simulator's truth.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cxpipe::sim::{Faults, SimConfig, SizeDistribution};
use sha2::{Digest, Sha256};

use crate::harness::{Sim, TestEnv};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/scripts/download_recordings.rhai"
);

/// A small hostile tenant: throttling, 5xx, resets, truncation, 3-second tokens, transfers
/// slower than their 1-second URLs, and recordings still `Processing` for 3 seconds.
pub fn hostile(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        recordings: 36,
        sizes: SizeDistribution {
            min: 150_000,
            max: 1_200_000,
            log_uniform: false,
        },
        processing_share: 0.2,
        processing_delay: Duration::from_secs(3),
        archived_share: 0.08,
        expired_share: 0.05,
        newest_at: chrono::Utc::now().timestamp() - 600,
        span: Duration::from_secs(80 * 24 * 3600),
        faults: Faults {
            token_ttl: Duration::from_secs(3),
            url_ttl: Duration::from_secs(1),
            error_rate: 0.08,
            throttle_rate: 0.08,
            reset_rate: 0.2,
            truncate_rate: 0.15,
            media_bytes_per_sec: 500_000,
            ..Faults::default()
        },
        ..SimConfig::default()
    }
}

/// Writes a config for the simulator tenant; `extra` is appended to its params. Objects go
/// to `objects/` in the test folder.
pub fn write_config(
    env: &TestEnv,
    base_url: &str,
    client_id: &str,
    secret: &str,
    extra: &str,
) -> PathBuf {
    let store = format!("uri = \"fs://{}\"", env.path().join("objects").display());
    write_config_with_store(env, base_url, client_id, secret, extra, &store)
}

/// [`write_config`] with `store` as the body of `[storage.default]`.
fn write_config_with_store(
    env: &TestEnv,
    base_url: &str,
    client_id: &str,
    secret: &str,
    extra: &str,
    store: &str,
) -> PathBuf {
    env.write("secrets/client_secret", secret);
    env.write("keys/k.key", &"ab".repeat(32));
    env.write(
        "cxpipe.toml",
        &format!(
            r#"
[tenants.sim]
base_url = "{base_url}"
auth = {{ kind = "client_credentials", token_url = "/api/v2/oauth/token", client_id = "{client_id}", client_secret = {{ file = "secrets/client_secret" }} }}
[tenants.sim.params]
processing_poll = "1s"
{extra}
[storage.default]
{store}
[keys.k]
file = "keys/k.key"
"#
        ),
    )
}

/// Every recording's expected outcome: `Ok(key, sha256)` or `Err(skip reason prefix)`.
fn expected(sim: &Sim, suffix: &str) -> BTreeMap<String, Result<(String, String), String>> {
    let truth = sim.get_json("/_sim/truth/recordings?limit=1000");
    let now = chrono::Utc::now().timestamp_millis();
    let buffer_ms = (0.7 * 90.0 * 86_400_000.0) as i64;
    let mut out = BTreeMap::new();
    for rec in truth["recordings"].as_array().unwrap() {
        let id = rec["id"].as_str().unwrap().to_string();
        let status = rec["status"].as_str().unwrap();
        let created =
            chrono::DateTime::parse_from_rfc3339(rec["createdDate"].as_str().unwrap()).unwrap();
        let outcome = if status == "Archived" || status == "Expired" {
            Err(format!("media {status}"))
        } else if now - created.timestamp_millis() > buffer_ms {
            Err("inside retention buffer".to_string())
        } else if rec["sizeBytes"].as_u64().unwrap() <= 1024 {
            Err("media too small".to_string())
        } else if rec["media"]["combined"].is_null() {
            Err("no channel available".to_string())
        } else {
            let key = format!(
                "recordings/{id}_combined.{}{suffix}",
                rec["format"].as_str().unwrap()
            );
            Ok((
                key,
                rec["media"]["combined"]["sha256"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ))
        };
        out.insert(id, outcome);
    }
    out
}

/// Object keys under `root` (recursively), excluding the writer's partial folder.
pub fn listing(root: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if rel.starts_with(".cxpipe-partial") {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(rel, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Objects stored under `root` as key → SHA-256 of the stored bytes.
fn fs_objects(root: &Path) -> BTreeMap<String, String> {
    listing(root)
        .into_iter()
        .map(|(key, path)| (key, sha256_file(&path)))
        .collect()
}

/// Checks stored objects (key → SHA-256) against the truth: every eligible recording
/// stored once and intact, nothing else in `recordings/`, every object with a manifest.
fn assert_stored_exactly(
    files: &BTreeMap<String, String>,
    expected: &BTreeMap<String, Result<(String, String), String>>,
    plain: bool,
) {
    let stored: Vec<&String> = files
        .keys()
        .filter(|k| k.starts_with("recordings/") && !k.ends_with(".manifest.json"))
        .collect();
    let wanted: Vec<&String> = expected
        .values()
        .filter_map(|o| o.as_ref().ok().map(|(k, _)| k))
        .collect();
    let mut wanted_sorted = wanted.clone();
    wanted_sorted.sort();
    assert_eq!(
        stored, wanted_sorted,
        "stored objects differ from the eligible recordings"
    );
    for (key, sha) in expected.values().filter_map(|o| o.as_ref().ok()) {
        assert!(
            files.contains_key(&format!("{key}.manifest.json")),
            "{key} has no manifest"
        );
        if plain {
            assert_eq!(&files[key], sha, "{key} differs from the simulator's media");
        }
    }
}

#[test]
fn recordings_download_intact_under_faults_and_a_rerun_does_no_new_work() {
    let sim = Sim::start(hostile(21));
    let env = TestEnv::new();
    let config = write_config(
        &env,
        &sim.base_url,
        &sim.credentials.client_id,
        &sim.credentials.client_secret,
        "",
    );
    let run = |extra: &[&str]| {
        let mut args = vec!["--config", config.to_str().unwrap(), "--tenant", "sim"];
        args.extend_from_slice(extra);
        env.run(Path::new(SCRIPT), &args)
    };

    let first = run(&[]);
    assert_eq!(
        first.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        first.stdout, first.stderr
    );
    let out = first.json();
    let (summary, report) = (&out["summary"], &out["report"]);
    let expected = expected(&sim, "");
    let eligible = expected.values().filter(|o| o.is_ok()).count() as u64;
    assert!(eligible >= 10, "the dataset should have work: {expected:?}");
    assert_stored_exactly(&fs_objects(&env.path().join("objects")), &expected, true);

    // Every ineligible recording was skipped with its reason; the report agrees.
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for why in expected.values().filter_map(|o| o.as_ref().err()) {
        *reasons.entry(why.clone()).or_default() += 1;
    }
    let reported = report["skipped_by_reason"].as_object().unwrap();
    for (prefix, n) in &reasons {
        let got: u64 = reported
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.as_u64().unwrap())
            .sum();
        assert_eq!(got, *n, "skips for {prefix}: {reported:?}");
    }
    assert_eq!(report["downloaded"].as_u64(), Some(eligible), "{report}");
    assert_eq!(report["failed"].as_u64(), Some(0), "{report}");
    assert_eq!(
        report["recordings_seen"].as_u64(),
        Some(expected.len() as u64)
    );
    assert!(
        summary["deferrals"].as_u64().unwrap() > 0,
        "Processing recordings were re-polled: {summary}"
    );

    // The faults really happened, and were survived.
    let stats = sim.get_json("/_sim/stats");
    for counter in [
        "throttled_429",
        "server_errors_5xx",
        "resets",
        "truncations",
        "urls_refused",
    ] {
        assert!(
            stats[counter].as_u64().unwrap() > 0,
            "no {counter} in this run: {stats}"
        );
    }
    assert!(
        stats["tokens_issued"].as_u64().unwrap() >= 2,
        "the token was refreshed: {stats}"
    );
    let metrics = &summary["metrics"];
    // Token requests the client made include ones the simulator failed with a 5xx or 429.
    let token_requests = metrics["api.token_requests"].as_u64().unwrap();
    assert!(
        token_requests >= stats["tokens_issued"].as_u64().unwrap(),
        "{metrics} vs {stats}"
    );
    assert!(
        metrics["api.throttled_429"].as_u64().unwrap() > 0,
        "{metrics}"
    );

    // The ledger agrees with the report.
    let counts = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(env.item_counts());
    assert_eq!(
        counts.get("done").copied().unwrap_or(0) as u64,
        eligible,
        "{counts:?}"
    );
    assert_eq!(
        counts.values().sum::<i64>() as usize,
        expected.len(),
        "{counts:?}"
    );

    // No secret reached the output, the ledger or the manifests.
    let secret = sim.credentials.client_secret.as_str();
    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("stdout".into(), first.stdout.clone().into()),
        ("stderr".into(), first.stderr.clone().into()),
    ];
    for dir in [env.state_dir(), env.path().join("objects")] {
        for (name, path) in listing(&dir) {
            // SQLite's -wal/-shm files may vanish as the ledger closes: skip what is gone.
            if (!name.starts_with("recordings/") || name.ends_with(".json"))
                && let Ok(bytes) = std::fs::read(path)
            {
                places.push((name, bytes));
            }
        }
    }
    for (name, bytes) in &places {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains(secret),
            "the client secret leaked into {name}"
        );
        assert!(
            !text.contains("Signature="),
            "a presigned URL leaked into {name}"
        );
    }

    // verify passes on the result.
    let objects = format!("fs://{}", env.path().join("objects").display());
    let verify = env.cxpipe(&["verify", &objects, "--config", config.to_str().unwrap()]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);

    // A re-run does no new work and stores nothing new.
    let before = listing(&env.path().join("objects")).len();
    let again = run(&[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let s = &again.json()["summary"];
    assert_eq!(
        (s["done"].as_u64(), s["quarantined"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    // Only the new run's report (and its manifest) were added.
    assert_eq!(listing(&env.path().join("objects")).len(), before + 2);
}

#[test]
fn encrypted_and_compressed_downloads_verify_and_decrypt_to_the_original() {
    let sim = Sim::start(SimConfig {
        recordings: 12,
        ..hostile(5)
    });
    let env = TestEnv::new();
    let config = write_config(
        &env,
        &sim.base_url,
        &sim.credentials.client_id,
        &sim.credentials.client_secret,
        "encrypt_key = \"k\"\ncompress = \"gzip\"",
    );
    let ran = env.run(
        Path::new(SCRIPT),
        &["--config", config.to_str().unwrap(), "--tenant", "sim"],
    );
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let expected = expected(&sim, ".gz.enc");
    assert_stored_exactly(&fs_objects(&env.path().join("objects")), &expected, false);

    let objects = format!("fs://{}", env.path().join("objects").display());
    let verify = env.cxpipe(&["verify", &objects, "--config", config.to_str().unwrap()]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    let (key, sha) = expected.values().find_map(|o| o.as_ref().ok()).unwrap();
    let out = env.path().join("restored.audio");
    let input = env.path().join("objects").join(key);
    let dec = env.cxpipe(&[
        "decrypt",
        "--config",
        config.to_str().unwrap(),
        "--decompress",
        "gzip",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(dec.code, 0, "{}", dec.stderr);
    assert_eq!(
        &sha256_file(&out),
        sha,
        "decrypt restores the recording byte for byte"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_way_then_rerun_stores_everything_once() {
    let sim = Sim::start(SimConfig {
        processing_share: 0.0,
        ..hostile(33)
    });
    let env = std::sync::Arc::new(TestEnv::new());
    let config = write_config(
        &env,
        &sim.base_url,
        &sim.credentials.client_id,
        &sim.credentials.client_secret,
        "",
    );
    let state = env.state_dir();
    let mut child = env
        .command()
        .args([
            "run",
            SCRIPT,
            "--config",
            config.to_str().unwrap(),
            "--tenant",
            "sim",
        ])
        .args(["--state", state.to_str().unwrap()])
        .spawn()
        .unwrap();
    let objects = env.path().join("objects");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stored = listing(&objects)
            .keys()
            .filter(|k| k.ends_with(".manifest.json"))
            .count();
        if stored >= 4 {
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

    let rerun = tokio::task::spawn_blocking({
        let (env, config) = (env.clone(), config.clone());
        move || {
            env.run(
                Path::new(SCRIPT),
                &["--config", config.to_str().unwrap(), "--tenant", "sim"],
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(rerun.code, 0, "{}\n{}", rerun.stdout, rerun.stderr);
    let expected = tokio::task::spawn_blocking(move || {
        let e = expected(&sim, "");
        drop(sim);
        e
    })
    .await
    .unwrap();
    assert_stored_exactly(&fs_objects(&objects), &expected, true);
    let counts = env.item_counts().await;
    let eligible = expected.values().filter(|o| o.is_ok()).count() as i64;
    let finished =
        counts.get("done").copied().unwrap_or(0) + counts.get("skipped").copied().unwrap_or(0);
    assert_eq!(
        finished as usize,
        expected.len(),
        "every recording ended done or skipped: {counts:?}"
    );
    assert!(
        counts.get("done").copied().unwrap_or(0) <= eligible,
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_land_intact_in_a_gcs_bucket_named_in_the_config() {
    use crate::storage::gcs;
    let (gcs, endpoint) = gcs::start().await;
    let sim = Sim::start(SimConfig {
        recordings: 12,
        processing_share: 0.0,
        ..hostile(8)
    });
    let env = std::sync::Arc::new(TestEnv::new());
    env.write("secrets/gcs-token", gcs::TOKEN);
    let store = format!(
        "uri = \"gcs://{}/archive\"\nendpoint = \"{endpoint}\"\ntoken = {{ file = \"secrets/gcs-token\" }}",
        gcs::BUCKET
    );
    let config = write_config_with_store(
        &env,
        &sim.base_url,
        &sim.credentials.client_id,
        &sim.credentials.client_secret,
        "",
        &store,
    );
    let (ran, verify, expected) = tokio::task::spawn_blocking({
        let (env, config) = (env.clone(), config.clone());
        move || {
            let config = config.to_str().unwrap();
            let ran = env.run(Path::new(SCRIPT), &["--config", config, "--tenant", "sim"]);
            let verify = env.cxpipe(&["verify", "default", "--config", config]);
            (ran, verify, expected(&sim, ""))
        }
    })
    .await
    .unwrap();
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert_stored_exactly(&gcs.objects_sha256("archive/"), &expected, true);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    let eligible = expected.values().filter(|o| o.is_ok()).count();
    assert!(
        verify
            .stderr
            .contains(&format!("{} ok, 0 problems", eligible + 1)),
        "every recording and the run report verified: {}",
        verify.stderr
    );
    assert!(!ran.stderr.contains(gcs::TOKEN) && !verify.stderr.contains(gcs::TOKEN));
}
