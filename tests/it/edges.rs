//! The first-user rough edges of issue 13, item 7, each shown gone: documents written with
//! `store.write_json` pass `cxpipe verify` (and a tampered one is reported); a failing
//! run says its error once.

use std::path::{Path, PathBuf};

use crate::harness::{Ran, TestEnv};

/// A config with a folder store `objects/` and a key (so manifests carry a MAC).
fn store_and_key_config(env: &TestEnv) -> PathBuf {
    env.write("k.hex", &hex::encode([0x42u8; 32]));
    env.write(
        "cxpipe.toml",
        &format!(
            "[storage.default]\nuri = \"fs://{}\"\n\n[keys.k]\nfile = \"k.hex\"\n",
            env.path().join("objects").display()
        ),
    )
}

fn run_with(env: &TestEnv, script: &Path, config: &Path) -> Ran {
    env.run(script, &["--config", config.to_str().unwrap()])
}

fn verify(env: &TestEnv, config: &Path) -> Ran {
    let uri = format!("fs://{}", env.path().join("objects").display());
    env.cxpipe(&["verify", &uri, "--config", config.to_str().unwrap()])
}

#[test]
fn documents_written_with_write_json_pass_verify_and_a_tampered_one_is_reported() {
    let env = TestEnv::new();
    let config = store_and_key_config(&env);
    // Each item writes its own document; `finish` replaces the same report every run.
    let script = env.write(
        "docs.rhai",
        r#"
fn discover(ctx) { for i in 1..=3 { ctx.emit(`d${i}`, #{ n: i }); } }
fn process(ctx, item) { ctx.store.write_json(`docs/${ctx.item_key}.json`, item); }
fn finish(ctx, summary) {
    ctx.store.write_json("reports/last.json", #{ run_id: summary.run_id, done: summary.done });
    summary
}
"#,
    );
    for run in 1..=2 {
        let ran = run_with(&env, &script, &config);
        assert_eq!(ran.code, 0, "run {run}: {}\n{}", ran.stdout, ran.stderr);
        let checked = verify(&env, &config);
        assert_eq!(
            checked.code, 0,
            "run {run}: verify must pass:\n{}\n{}",
            checked.stdout, checked.stderr
        );
        assert!(
            checked.stderr.contains("verified 4 objects: 4 ok, 0 problems"),
            "run {run}: {}",
            checked.stderr
        );
    }
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.path().join("objects/docs/d2.json.manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["source"]["kind"], "write_json", "{manifest}");
    assert_eq!(manifest["item_key"], "d2", "{manifest}");
    assert!(manifest["mac"].is_object(), "a key is configured: {manifest}");

    let doc = env.path().join("objects/docs/d2.json");
    let text = std::fs::read_to_string(&doc).unwrap();
    std::fs::write(&doc, text.replace('2', "7")).unwrap();
    let checked = verify(&env, &config);
    assert_eq!(checked.code, 1, "{}\n{}", checked.stdout, checked.stderr);
    let problems: Vec<&str> = checked.stdout.lines().collect();
    assert!(
        problems.len() == 1
            && problems[0].starts_with("MISMATCH docs/d2.json: ")
            && problems[0].contains("stored sha256 differs from manifest"),
        "only the edited document is reported: {problems:?}\n{}",
        checked.stderr
    );
}
