//! `[pipelines.NAME]` through the real binary: `run --pipeline`, the ledger identity
//! pipeline × tenant, grants of stores and keys, and `cxpipe config check`.

use crate::harness::{Ran, TestEnv};

/// `cxpipe run --pipeline NAME --config cxpipe.toml --state state --json EXTRA`.
fn run_pipeline(env: &TestEnv, name: &str, extra: &[&str]) -> Ran {
    let state = env.state_dir().display().to_string();
    let mut args = vec![
        "run",
        "--pipeline",
        name,
        "--config",
        "cxpipe.toml",
        "--state",
        &state,
        "--json",
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    env.cxpipe(&args)
}

/// `cxpipe items ls --pipeline NAME` output.
fn items_of(env: &TestEnv, pipeline: &str) -> String {
    let state = env.state_dir().display().to_string();
    let ran = env.cxpipe(&["items", "--state", &state, "ls", "--pipeline", pipeline]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    ran.stdout
}

#[test]
fn two_pipelines_running_one_script_keep_separate_items_and_checkpoints() {
    let env = TestEnv::new();
    env.write(
        "cursor.rhai",
        r#"
fn discover(ctx) {
    let seen = ctx.checkpoint("cursor") ?? 0;
    ctx.emit(`item-${seen}`, 1);
    ctx.set_checkpoint("cursor", seen + 1);
}
fn process(ctx, item) { }
"#,
    );
    env.write(
        "cxpipe.toml",
        "[pipelines.a]\nscript = \"cursor.rhai\"\n\n[pipelines.b]\nscript = \"cursor.rhai\"\n",
    );
    for _ in 0..2 {
        let ran = run_pipeline(&env, "a", &[]);
        assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
        assert_eq!(ran.json()["summary"]["pipeline"], "a");
    }
    let ran = run_pipeline(&env, "b", &[]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let s = &ran.json()["summary"];
    assert_eq!(s["pipeline"], "b");
    assert_eq!(s["done"], 1, "b's item is its own, not a's: {s}");
    assert_eq!(s["already_done"], 0, "{s}");
    let a = items_of(&env, "a");
    let b = items_of(&env, "b");
    assert!(a.contains("item-0") && a.contains("item-1"), "{a}");
    // b's checkpoint started from nothing: it emitted item-0, not item-2.
    assert!(
        b.contains("item-0") && !b.contains("item-1") && !b.contains("item-2"),
        "{b}"
    );
}

#[test]
fn a_pipeline_reaches_only_the_stores_and_keys_it_is_granted() {
    let env = TestEnv::new();
    env.write("keys/archive.key", &"11".repeat(32));
    env.write("keys/other.key", &"22".repeat(32));
    env.write(
        "grants.rhai",
        r#"
const OPTIONS = #{ max_attempts: 1 };
fn discover(ctx) {
    ctx.emit("granted", "granted");
    ctx.emit("other-key", "other-key");
    ctx.emit("other-store", "other-store");
}
fn process(ctx, what) {
    switch what {
        "granted" => from_json(#{ a: 1 }).encrypt("archive").write(ctx.stores.extra, "x.json"),
        "other-key" => from_json(#{ a: 1 }).encrypt("other").discard(),
        "other-store" => from_json(#{ a: 1 }).write(ctx.stores.secret, "y.json"),
    }
}
"#,
    );
    let objects = env.path().join("objects").display().to_string();
    env.write(
        "cxpipe.toml",
        &format!(
            r#"[storage.default]
uri = "memory://grants-default"
[storage.extra]
uri = "fs://{objects}"
[storage.secret]
uri = "memory://grants-secret"
[keys.archive]
file = "keys/archive.key"
[keys.other]
file = "keys/other.key"
[pipelines.grants]
script = "grants.rhai"
stores = ["extra"]
keys = ["archive"]
"#
        ),
    );
    let ran = run_pipeline(&env, "grants", &[]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    let s = &ran.json()["summary"];
    assert_eq!(s["done"], 1, "{s}");
    assert!(env.path().join("objects/x.json").is_file(), "{s}");
    let failures = s["failures"].as_array().unwrap();
    let error_of = |key: &str| {
        failures
            .iter()
            .find(|f| f["key"] == key)
            .unwrap_or_else(|| panic!("{key} did not fail: {s}"))["error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let e = error_of("other-key");
    assert!(
        e.contains("key \"other\" is not granted to pipeline grants")
            && e.contains("keys = [\"other\"]")
            && e.contains("[pipelines.grants]"),
        "{e}"
    );
    let e = error_of("other-store");
    assert!(
        e.contains("not granted a store named \"secret\"") && e.contains("[pipelines.grants]"),
        "{e}"
    );
}

#[test]
fn config_check_lists_pipelines_or_reports_every_problem_with_exit_1() {
    let env = TestEnv::new();
    env.write(
        "ok.rhai",
        "fn discover(ctx) { }\nfn process(ctx, item) { }\n",
    );
    env.write(
        "broken.rhai",
        "fn discover(ctx) { }\nfn process(ctx, item) { let x = ; }\n",
    );
    env.write(
        "good.toml",
        "[pipelines.nightly]\nscript = \"ok.rhai\"\nschedule = \"0 0 2 * * *\"\n",
    );
    let ran = env.cxpipe(&["config", "check", "--config", "good.toml"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains("nightly  tenant default  schedule \"0 0 2 * * *\" (UTC)"),
        "{}",
        ran.stdout
    );

    env.write(
        "bad.toml",
        "[pipelines.nightly]\nscript = \"ok.rhai\"\nschedule = \"every night\"\n\n\
         [pipelines.hourly]\nscript = \"ok.rhai\"\ncolour = 1\n",
    );
    let ran = env.cxpipe(&["config", "check", "--config", "bad.toml"]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains("bad.toml:3:12: [pipelines.nightly]: schedule"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("bad.toml:7:1: [pipelines.hourly]: unknown field `colour`"),
        "{}",
        ran.stdout
    );
    assert!(ran.stderr.contains("2 problem(s)"), "{}", ran.stderr);

    // A script that does not compile is found too, with its own position.
    env.write("scripted.toml", "[pipelines.p]\nscript = \"broken.rhai\"\n");
    let ran = env.cxpipe(&["config", "check", "--config", "scripted.toml"]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("broken.rhai:2:"), "{}", ran.stdout);
}
