//! The real platform: `scripts/export_contacts.rhai` run by the real binary against the
//! simulator's real dialect (password grant with discovery, `/contacts/completed`, Media
//! Playback) with faults on — 429s, 5xx, connection resets, 3-second tokens, media links
//! that expire mid-transfer, recordings still processing — checked against the simulator's
//! truth and counters, the ledger and the store; a re-run does no new work; a run killed
//! with SIGKILL then re-run stores nothing twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cxpipe::sim::{Faults, RateLimit, SimConfig, SizeDistribution};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::download::listing;
use crate::harness::{Sim, TestEnv};

pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/export_contacts.rhai");
const PLAYBACK: &str = "GET /media-playback/v1/contacts";

/// A hostile real tenant: throttling, 5xx, resets, 3-second tokens, media links living
/// 1 second streamed at 100 kB/s (every file outlives its link), a tenth of the
/// recordings still processing for about 2 seconds, some archived or expired.
fn hostile(seed: u64, interactions: usize) -> SimConfig {
    let mut rate_limits = Faults::default().rate_limits;
    rate_limits.insert(
        "media-playback".into(),
        RateLimit {
            requests: 40,
            per: Duration::from_secs(1),
        },
    );
    SimConfig {
        seed,
        recordings: interactions * 2 / 3,
        interactions,
        sizes: SizeDistribution {
            min: 120_000,
            max: 400_000,
            log_uniform: false,
        },
        processing_share: 0.1,
        processing_delay: Duration::from_secs(2),
        archived_share: 0.05,
        expired_share: 0.05,
        faults: Faults {
            token_ttl: Duration::from_secs(3),
            url_ttl: Duration::from_secs(1),
            abort_on_url_expiry: true,
            media_bytes_per_sec: 100_000,
            error_rate: 0.06,
            throttle_rate: 0.06,
            reset_rate: 0.08,
            truncate_rate: 0.0,
            rate_limits,
            ..Faults::default()
        },
        ..SimConfig::default()
    }
}

/// A password-grant tenant discovering its API from the simulator (as on the real
/// platform), with the `cxone-real` preset; the documented 150 playback calls per 5 minutes
/// are raised so the test does not wait minutes. `extra` is appended to its params.
pub fn write_config(env: &TestEnv, sim: &Sim, extra: &str) -> PathBuf {
    let c = &sim.credentials;
    env.write("secrets/app", &c.client_secret);
    env.write("secrets/ak", &c.access_key_id);
    env.write("secrets/aks", &c.access_key_secret);
    env.write("keys/k.key", &"cd".repeat(32));
    env.write(
        "cxpipe.toml",
        &format!(
            r#"
[tenants.real]
auth = {{ kind = "password", issuer = "{base}", client_id = "{client}", client_secret = {{ file = "secrets/app" }}, username = {{ file = "secrets/ak" }}, password = {{ file = "secrets/aks" }} }}
[tenants.real.rate_limits]
preset = "cxone-real"
families = {{ media-playback = {{ paths = ["/media-playback/v1"], requests = 50, per = "1s" }} }}
[tenants.real.params]
since = "2020-01-01T00:00:00Z"
page_size = 7
no_media_poll = "1s"
no_media_looks = 6
{extra}
[storage.default]
uri = "fs://{objects}"
[keys.k]
file = "keys/k.key"
"#,
            base = sim.base_url,
            client = c.client_id,
            objects = env.path().join("objects").display(),
        ),
    )
}

pub fn run(env: &TestEnv, config: &Path) -> crate::harness::Ran {
    env.run(
        Path::new(SCRIPT),
        &["--config", config.to_str().unwrap(), "--tenant", "real"],
    )
}

/// What each completed contact must end as: `Ok(object key → SHA-256 of its bytes, or
/// "" for a messages document)` or `Err("no media")`.
type Expected = BTreeMap<String, Result<BTreeMap<String, String>, String>>;

fn expected(sim: &Sim) -> Expected {
    let interactions = sim.get_json("/_sim/truth/interactions?limit=1000");
    let recordings = sim.get_json("/_sim/truth/recordings?limit=1000");
    let recs: BTreeMap<&str, &Value> = recordings["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r))
        .collect();
    let mut out = BTreeMap::new();
    for ix in interactions["interactions"].as_array().unwrap() {
        if ix["status"] != "closed" {
            continue;
        }
        let id = ix["contactId"].as_u64().unwrap().to_string();
        let outcome = match ix["recordingId"].as_str() {
            Some(rec) => {
                let rec = recs[rec];
                if rec["status"] == "Available" {
                    let key = format!("contacts/{id}/voice-0.{}", rec["format"].as_str().unwrap());
                    let sha = rec["media"]["combined"]["sha256"].as_str().unwrap();
                    Ok(BTreeMap::from([(key, sha.to_string())]))
                } else {
                    Err("no media".to_string())
                }
            }
            None => Ok(BTreeMap::from([(
                format!("contacts/{id}/messages.json"),
                String::new(),
            )])),
        };
        out.insert(id, outcome);
    }
    out
}

fn ledger_items(env: &TestEnv) -> BTreeMap<String, cxpipe::ledger::ItemRow> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let ledger = cxpipe::ledger::Ledger::open_dir(&env.state_dir())
                .await
                .unwrap();
            ledger
                .list_items(&Default::default(), 100_000)
                .await
                .unwrap()
                .into_iter()
                .map(|row| (row.key.clone(), row))
                .collect()
        })
}

/// Every completed contact ended as expected: each object stored once, byte-exact, with a
/// manifest naming its contact, and nothing else under `contacts/`; every contact without
/// media skipped with its reason. Returns the number of objects.
pub fn assert_exported_once(env: &TestEnv, expected: &Expected) -> usize {
    let objects = listing(&env.path().join("objects"));
    let items = ledger_items(env);
    assert_eq!(
        items.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "one item per completed contact"
    );
    let mut wanted = BTreeMap::new();
    for (id, outcome) in expected {
        let item = &items[id];
        match outcome {
            Ok(files) => {
                assert_eq!(item.state, "done", "contact {id}: {item:?}");
                wanted.extend(files.iter().map(|(k, v)| (k.clone(), (id, v))));
            }
            Err(reason) => {
                assert_eq!(item.state, "skipped", "contact {id}: {item:?}");
                assert_eq!(
                    item.result.as_deref(),
                    Some(format!(r#"{{"skipped":"{reason}"}}"#).as_str())
                );
            }
        }
    }
    let stored: Vec<&String> = objects
        .keys()
        .filter(|k| k.starts_with("contacts/") && !k.ends_with(".manifest.json"))
        .collect();
    assert_eq!(
        stored,
        wanted.keys().collect::<Vec<_>>(),
        "stored objects differ from the contacts' media"
    );
    for (key, (id, sha)) in &wanted {
        let bytes = std::fs::read(&objects[key.as_str()]).unwrap();
        if sha.is_empty() {
            let doc: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(doc["contactId"], id.as_str(), "{key}");
            assert_eq!(doc["messages"].as_array().unwrap().len(), 4, "{key}");
        } else {
            assert_eq!(
                &hex::encode(Sha256::digest(&bytes)),
                *sha,
                "{key} is not byte-exact"
            );
        }
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(&objects[format!("{key}.manifest.json").as_str()]).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest["source"]["contactId"], id.as_str(), "{manifest}");
    }
    wanted.len()
}

fn stats(sim: &Sim) -> Value {
    sim.get_json("/_sim/stats")
}

fn count(stats: &Value, route: &str) -> u64 {
    stats["requests"][route].as_u64().unwrap_or(0)
}

#[test]
fn completed_contacts_media_is_stored_once_byte_exact_under_faults_and_a_rerun_does_no_new_work() {
    let sim = Sim::start(hostile(21, 60));
    let env = TestEnv::new();
    let config = write_config(&env, &sim, "");
    let first = run(&env, &config);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let report = first.json()["report"].clone();

    let expected = expected(&sim);
    let files = assert_exported_once(&env, &expected);
    let (voice, messages) = expected
        .values()
        .flatten()
        .flatten()
        .fold((0, 0), |(v, m), f| {
            if f.1.is_empty() {
                (v, m + 1)
            } else {
                (v + 1, m)
            }
        });
    let no_media = expected.values().filter(|o| o.is_err()).count();
    assert!(
        voice >= 20 && messages >= 5 && no_media >= 1,
        "{expected:?}"
    );
    assert_eq!(
        report["archived"].as_u64(),
        Some((expected.len() - no_media) as u64),
        "{report}"
    );
    assert_eq!(
        report["voice_files"].as_u64(),
        Some(voice as u64),
        "{report}"
    );
    assert_eq!(
        report["message_files"].as_u64(),
        Some(messages as u64),
        "{report}"
    );
    assert_eq!(
        report["skipped_by_reason"]["no media"].as_u64(),
        Some(no_media as u64)
    );
    assert_eq!(report["failed"].as_u64(), Some(0), "{report}");
    assert_eq!(report["checkpoint_committed"], true, "{report}");
    assert_eq!(files, voice + messages);

    // The faults happened and were survived.
    let after_first = stats(&sim);
    for counter in [
        "throttled_429",
        "server_errors_5xx",
        "resets",
        "urls_refused",
    ] {
        assert!(
            after_first[counter].as_u64().unwrap() > 0,
            "no {counter}: {after_first}"
        );
    }
    assert!(
        after_first["tokens_issued"].as_u64().unwrap() >= 2,
        "{after_first}"
    );
    let objects = format!("fs://{}", env.path().join("objects").display());
    let verify = env.cxpipe(&["verify", &objects, "--config", config.to_str().unwrap()]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);

    // A re-run starts from the committed poll time: nothing admitted, no playback call, no
    // media stream, nothing stored but its report.
    let before = listing(&env.path().join("objects")).len();
    let again = run(&env, &config);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let s = &again.json()["summary"];
    assert_eq!(
        (s["admitted"].as_u64(), s["done"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    let after_again = stats(&sim);
    assert_eq!(count(&after_again, PLAYBACK), count(&after_first, PLAYBACK));
    assert_eq!(after_again["media_streams"], after_first["media_streams"]);
    assert_eq!(listing(&env.path().join("objects")).len(), before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_way_then_rerun_stores_every_contact_once() {
    // No resets or expiring links here: every media stream the simulator served is a
    // transfer the script started, so its counter bounds what could have been stored twice.
    let mut config = hostile(23, 90);
    config.faults.reset_rate = 0.0;
    config.faults.url_ttl = Duration::from_secs(600);
    let sim = std::sync::Arc::new(Sim::start(config));
    let env = std::sync::Arc::new(TestEnv::new());
    let config = write_config(&env, &sim, "encrypt_key = \"k\"");
    let state = env.state_dir();
    let mut child = env
        .command()
        .args(["run", SCRIPT, "--config", config.to_str().unwrap()])
        .args(["--tenant", "real", "--state", state.to_str().unwrap()])
        .spawn()
        .unwrap();
    let objects = env.path().join("objects");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stored = listing(&objects)
            .keys()
            .filter(|k| k.starts_with("contacts/") && k.ends_with(".manifest.json"))
            .count();
        if stored >= 8 {
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

    let (rerun, stats, expected, stored, items) = tokio::task::spawn_blocking({
        let (env, config, sim) = (env.clone(), config.clone(), sim.clone());
        move || {
            let rerun = run(&env, &config);
            let stored = listing(&env.path().join("objects"));
            (
                rerun,
                stats(&sim),
                expected(&sim),
                stored,
                ledger_items(&env),
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(rerun.code, 0, "{}\n{}", rerun.stdout, rerun.stderr);
    let wanted: Vec<&String> = expected.values().flatten().flat_map(|f| f.keys()).collect();
    for key in &wanted {
        let key = format!("{key}.enc");
        assert!(stored.contains_key(&key), "{key} missing");
        assert!(
            stored.contains_key(&format!("{key}.manifest.json")),
            "{key} has no manifest"
        );
    }
    let under_contacts = stored
        .keys()
        .filter(|k| k.starts_with("contacts/") && !k.ends_with(".manifest.json"))
        .count();
    assert_eq!(
        under_contacts,
        wanted.len(),
        "nothing stored twice or elsewhere"
    );
    for (id, outcome) in &expected {
        let want = if outcome.is_ok() { "done" } else { "skipped" };
        assert_eq!(items[id].state, want, "contact {id}");
    }
    // Media streams served: each voice file once, plus at most one per worker cut off by
    // the kill (four workers).
    let voice = wanted
        .iter()
        .filter(|k| !k.ends_with("messages.json"))
        .count() as u64;
    let streams = stats["media_streams"].as_u64().unwrap();
    assert!(
        (voice..=voice + 4).contains(&streams),
        "{streams} media streams for {voice} voice files"
    );
    let verify = env.cxpipe(&[
        "verify",
        &format!("fs://{}", objects.display()),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
}
