//! Storage against hostile ids and scripts, through the real binary where it matters:
//! listing prefixes that climb out of the store, keys with NUL or 5,000 characters, keys
//! that would pass for manifests, stale partial files, deadlines on store calls, and
//! forged manifests caught by `cxpipe verify`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use cxpipe::flow::{Flow, Source, Stage};
use cxpipe::storage::Store;
use sha2::Digest as _;

use crate::flow::{engine, eval, eval_in_scope, get_str, test_keys};
use crate::harness::{Ran, TestEnv};

/// `cxpipe ARGS` in `env`, killed (and the test failed) if it runs past `limit`.
fn run_bounded(env: &TestEnv, args: &[&str], limit: Duration) -> (Ran, Duration) {
    let started = Instant::now();
    let mut child = env
        .command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cxpipe");
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "cxpipe {args:?} still running after {limit:?}; stderr ends:\n{}",
                String::from_utf8_lossy(&out.stderr)
                    .chars()
                    .rev()
                    .take(2000)
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect::<String>()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (out.into(), started.elapsed())
}

/// A workspace with `[storage.default]` on `fs://out` and the script `process_body`.
fn pipeline(process_body: &str, options: &str) -> (TestEnv, std::path::PathBuf) {
    let env = TestEnv::new();
    env.write("cxpipe.toml", "[storage.default]\nuri = \"fs://out\"\n");
    let script = env.write(
        "p.rhai",
        &format!(
            "const OPTIONS = #{{ {options} }};\n\
             fn discover(ctx) {{ ctx.emit(\"a\", #{{ n: 1 }}); }}\n\
             fn process(ctx, item) {{ {process_body} }}\n"
        ),
    );
    (env, script)
}

fn run_args<'a>(script: &'a str, state: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        script,
        "--config",
        "cxpipe.toml",
        "--state",
        state,
        "--json",
        "--no-progress",
    ]
}

#[test]
fn listing_outside_the_store_is_refused_at_once() {
    for prefix in ["../", "/etc", "a/../../"] {
        let (env, script) = pipeline(
            &format!("ctx.store.list({prefix:?})"),
            "max_attempts: 1, item_timeout: \"20s\"",
        );
        let (script, state) = (script.display().to_string(), env.state_dir());
        let state = state.display().to_string();
        let (ran, took) = run_bounded(&env, &run_args(&script, &state), Duration::from_secs(120));
        assert_eq!(ran.code, 1, "{prefix}: {}\n{}", ran.stdout, ran.stderr);
        let summary = &ran.json()["summary"];
        assert_eq!(summary["quarantined"], 1, "{prefix}: {summary}");
        let error = summary["failures"][0]["error"].as_str().unwrap();
        assert!(
            error.contains("invalid key") && error.contains(prefix),
            "{prefix}: {error}"
        );
        assert!(
            ran.stderr.len() < 100_000,
            "{prefix}: {} bytes of logs",
            ran.stderr.len()
        );
        assert!(took < Duration::from_secs(60), "{prefix}: took {took:?}");
    }
}

#[test]
fn nul_and_overlong_keys_fail_permanently_on_the_first_attempt() {
    let (env, script) = pipeline(
        "let key = if item.n == 1 { \"rec/bad\\x00id.wav\" } else { let k = \"\"; k.pad(5000, \"x\"); k };\n\
         from_json(item).write(ctx.store, key)",
        "max_attempts: 5, retry_backoff: \"2s\", item_timeout: \"60s\"",
    );
    // Two items: one with a NUL byte, one with a 5,000-character id.
    let text = std::fs::read_to_string(&script).unwrap().replace(
        "ctx.emit(\"a\", #{ n: 1 });",
        "ctx.emit(\"nul\", #{ n: 1 }); ctx.emit(\"long\", #{ n: 2 });",
    );
    std::fs::write(&script, text).unwrap();
    let (script, state) = (
        script.display().to_string(),
        env.state_dir().display().to_string(),
    );
    let (ran, took) = run_bounded(&env, &run_args(&script, &state), Duration::from_secs(300));
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let summary = &ran.json()["summary"];
    assert_eq!(summary["quarantined"], 2, "{summary}");
    assert_eq!(summary["retries"], 0, "{summary}");
    for f in summary["failures"].as_array().unwrap() {
        assert_eq!(f["attempts"], 1, "{f}");
        let error = f["error"].as_str().unwrap();
        assert!(
            error.contains("control characters") || error.contains("at most 1010 bytes"),
            "{error}"
        );
        assert!(error.len() < 1000, "the id is not echoed whole: {error}");
    }
    // Without retries the run never waits for a backoff (2 s, 4 s, ...).
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(!env.path().join("out/rec").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_ending_in_the_manifest_suffix_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::from_uri(&format!("fs://{}", dir.path().display())).unwrap();
    let s = store.clone();
    let err = tokio::task::spawn_blocking(move || {
        let flow = Flow::new(Source::Bytes {
            data: Bytes::from_static(b"{}"),
            kind: "json",
        });
        cxpipe::flow::sink::write(
            &flow,
            &s,
            "rec/42.manifest.json",
            &test_keys(),
            None,
            &Default::default(),
        )
        .unwrap_err()
    })
    .await
    .unwrap();
    assert!(err.to_string().contains("reserved for manifest"), "{err}");
    assert!(!err.retryable());
    assert!(store.list("").await.unwrap().is_empty());
    let e = store
        .put("x.wav.manifest.json", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("reserved for manifest"), "{e}");
}

fn age(path: &Path, by: Duration) {
    std::fs::write(path, b"half an object").unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - by).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_partials_are_removed_on_the_first_write_and_fresh_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("out/.cxpipe-partial");
    std::fs::create_dir_all(&partial).unwrap();
    age(
        &partial.join("killed.wav.Ab12Cd34"),
        Duration::from_secs(3 * 86_400),
    );
    age(&partial.join("live.wav.Ef56Gh78"), Duration::from_secs(30));
    age(
        &partial.join("older-than-2h.wav.Ij90Kl12"),
        Duration::from_secs(3 * 3600),
    );

    let store = Store::from_uri(&format!("fs://{}", dir.path().join("out").display())).unwrap();
    store
        .put("report.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert!(!partial.join("killed.wav.Ab12Cd34").exists());
    assert!(partial.join("live.wav.Ef56Gh78").exists());
    assert!(
        partial.join("older-than-2h.wav.Ij90Kl12").exists(),
        "younger than the 24 h default"
    );

    // A shorter age from the store's table.
    let cfg: cxpipe::storage::StorageConfig =
        toml::from_str("uri = \"fs://out\"\npartial_max_age = \"2h\"").unwrap();
    let store = Store::from_config(&cfg, dir.path()).unwrap();
    let w = store.create("x.wav").await.unwrap().unwrap();
    drop(w);
    assert!(!partial.join("older-than-2h.wav.Ij90Kl12").exists());
    assert!(partial.join("live.wav.Ef56Gh78").exists());
    let bad: cxpipe::storage::StorageConfig =
        toml::from_str("uri = \"fs://out\"\npartial_max_age = \"soon\"").unwrap();
    let e = Store::from_config(&bad, dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("partial_max_age"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_call_after_the_item_deadline_fails_with_a_deadline_error() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("fs://{}", dir.path().display());
    let late = engine();
    let script = format!(r#"storage("{uri}").size("a.wav")"#);
    let err = tokio::task::spawn_blocking(move || {
        let scope = cxpipe::item_scope::ItemScope {
            deadline: Some(Instant::now() - Duration::from_millis(1)),
            ..Default::default()
        };
        eval_in_scope(&late, &script, scope).unwrap_err()
    })
    .await
    .unwrap();
    let rhai::EvalAltResult::ErrorRuntime(v, _) = *err else {
        panic!("{err}");
    };
    let map = v.cast::<rhai::Map>();
    let message = get_str(&map, "message");
    assert!(message.contains("deadline passed"), "{message}");
    assert!(message.contains("a.wav"), "{message}");
    // Without a deadline, or before it, the same call answers.
    let size = eval(engine(), format!(r#"storage("{uri}").size("a.wav")"#))
        .await
        .unwrap();
    assert_eq!(size.as_int().unwrap(), -1);
}

#[test]
fn a_store_call_still_running_at_the_deadline_is_cut() {
    // A server that takes connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let (env, script) = pipeline(
        "ctx.store.size(\"rec/1.wav\")",
        "max_attempts: 1, item_timeout: \"3s\"",
    );
    env.write(
        "cxpipe.toml",
        &format!(
            "[storage.default]\nuri = \"s3://bucket/p\"\nendpoint = \"http://127.0.0.1:{port}\"\n\
             access_key_id = {{ env = \"CXPIPE_TEST_AK\" }}\nsecret_access_key = {{ env = \"CXPIPE_TEST_SK\" }}\n"
        ),
    );
    let (script, state) = (
        script.display().to_string(),
        env.state_dir().display().to_string(),
    );
    let started = Instant::now();
    let mut cmd = env.command();
    cmd.args(run_args(&script, &state))
        .env("CXPIPE_TEST_AK", "AKIDEXAMPLE")
        .env("CXPIPE_TEST_SK", "secret");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the store call was not cut at the item's deadline");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ran: Ran = child.wait_with_output().unwrap().into();
    drop(silent);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let error = ran.json()["summary"]["failures"][0]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("checking \"rec/1.wav\"") && error.contains("deadline passed"),
        "{error}"
    );
}

/// Writes a plain object and an encrypted one with the test key `k` into `root`.
async fn write_two(root: &Path) -> Store {
    let store = Store::from_uri(&format!("fs://{}", root.display())).unwrap();
    let s = store.clone();
    tokio::task::spawn_blocking(move || {
        let keys = test_keys();
        let src = Source::Bytes {
            data: Bytes::from_static(b"the original recording"),
            kind: "test",
        };
        for (key, stages) in [
            ("rec/plain.wav", vec![Stage::Md5]),
            ("rec/secret.enc", vec![Stage::Encrypt("k".into())]),
        ] {
            let flow = Flow {
                stages,
                ..Flow::new(src.clone())
            };
            cxpipe::flow::sink::write(&flow, &s, key, &keys, None, &Default::default()).unwrap();
        }
    })
    .await
    .unwrap();
    store
}

fn verify(env: &TestEnv, root: &Path, with_key: bool, extra: &[&str]) -> Ran {
    let uri = format!("fs://{}", root.display());
    let mut args = vec!["verify", uri.as_str()];
    if with_key {
        args.extend(["--config", "cxpipe.toml"]);
    }
    args.extend_from_slice(extra);
    env.cxpipe(&args)
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_a_forged_manifest_when_a_key_is_configured() {
    let env = TestEnv::new();
    env.write("k.hex", &hex::encode([0x42u8; 32]));
    env.write("cxpipe.toml", "[keys.k]\nfile = \"k.hex\"\n");
    let root = env.path().join("store");
    write_two(&root).await;
    let ran = verify(&env, &root, true, &[]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);

    // Replace the object and make its manifest's hashes match the new bytes.
    let forged = b"a forged recording!!!";
    std::fs::write(root.join("rec/plain.wav"), forged).unwrap();
    edit_json(&root.join("rec/plain.wav.manifest.json"), |m| {
        let sha = crate::flow::sha256_hex(forged);
        for part in ["plaintext", "stored"] {
            m[part]["sha256"] = sha.clone().into();
            m[part]["size"] = forged.len().into();
        }
        m["plaintext"]["md5"] = hex::encode(md5::Md5::digest(forged)).into();
    });
    let unkeyed = verify(&env, &root, false, &[]);
    assert_eq!(
        unkeyed.code, 0,
        "without a key the hashes agree: {}",
        unkeyed.stdout
    );
    let ran = verify(&env, &root, true, &[]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout.contains("rec/plain.wav: forged manifest"),
        "{}",
        ran.stdout
    );
    assert!(!ran.stdout.contains("rec/secret.enc"), "{}", ran.stdout);

    // A manifest stripped of its MAC (or written before MACs) is a problem with a key
    // loaded, unless accepted on purpose.
    edit_json(&root.join("rec/secret.enc.manifest.json"), |m| {
        m.as_object_mut().unwrap().remove("mac");
    });
    std::fs::remove_file(root.join("rec/plain.wav")).unwrap();
    std::fs::remove_file(root.join("rec/plain.wav.manifest.json")).unwrap();
    let ran = verify(&env, &root, true, &[]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains("rec/secret.enc: unauthenticated manifest"),
        "{}",
        ran.stdout
    );
    let ran = verify(&env, &root, true, &["--accept-unauthenticated"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stderr
            .contains("unauthenticated manifest (no MAC), accepted"),
        "{}",
        ran.stderr
    );
}
