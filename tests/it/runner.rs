//! The foundation, driven through the real binary: runs, re-runs, crashes, retries,
//! quarantine, deadlines, checkpoints and `cxpipe check`.

use std::time::{Duration, Instant};

use crate::harness::TestEnv;

/// The summary shows `done` items done and exactly one quarantined, whose error says `why`.
fn assert_one_quarantined(s: &serde_json::Value, done: u64, why: &str) {
    assert_eq!(
        (s["done"].as_u64(), s["quarantined"].as_u64()),
        (Some(done), Some(1)),
        "{s}"
    );
    let error = s["failures"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains(why), "expected {why:?} in the failure: {s}");
}

const TEN_THOUSAND: &str = r#"
const OPTIONS = #{ concurrency: 4 };
fn discover(ctx) {
    for i in 0..10000 { ctx.emit(`item-${i}`, #{ n: i }); }
}
fn process(ctx, item) { item.n * 2 }
"#;

#[test]
fn ten_thousand_items_run_once_and_a_rerun_does_nothing() {
    let env = TestEnv::new();
    let script = env.write("many.rhai", TEN_THOUSAND);
    let first = env.run(&script, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let s = &first.json()["summary"];
    assert_eq!(
        (s["emitted"].as_u64(), s["done"].as_u64()),
        (Some(10_000), Some(10_000))
    );

    let second = env.run(&script, &[]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    let s = &second.json()["summary"];
    assert_eq!(s["emitted"].as_u64(), Some(10_000));
    assert_eq!(
        s["admitted"].as_u64(),
        Some(0),
        "nothing is processed again"
    );
    assert_eq!(s["done"].as_u64(), Some(0));
}

#[tokio::test]
async fn a_run_killed_mid_way_completes_on_rerun_with_every_item_done_once() {
    let env = TestEnv::new();
    let script = env.write(
        "slow.rhai",
        r#"
const OPTIONS = #{ concurrency: 2 };
fn discover(ctx) { for i in 0..3000 { ctx.emit(`k${i}`, i); } }
fn process(ctx, item) { let x = 0; for j in 0..3000 { x += j; } ctx.kv.set(`seen-${item}`, true); x }
"#,
    );
    let state = env.state_dir();
    let mut child = env
        .command()
        .args([
            "run",
            script.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
    // Kill once some items are done but (almost certainly) not all.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if state.join("ledger.sqlite").exists()
            && env.item_counts().await.get("done").copied().unwrap_or(0) > 100
        {
            break;
        }
        assert!(Instant::now() < deadline, "the run made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = env.item_counts().await;
    assert!(
        before.get("done").copied().unwrap_or(0) < 3000,
        "killed too late: {before:?}"
    );

    let rerun = env.run(&script, &[]);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    let counts = env.item_counts().await;
    assert_eq!(
        counts,
        [("done".to_string(), 3000)].into_iter().collect(),
        "{}",
        rerun.stdout
    );
    let s = &rerun.json()["summary"];
    assert_eq!(
        s["done"].as_u64().unwrap() + before.get("done").copied().unwrap_or(0) as u64,
        3000,
        "items done before the kill were not processed again: {s}"
    );
}

#[test]
fn an_item_that_always_throws_is_quarantined_with_its_error_and_line() {
    let env = TestEnv::new();
    let script = env.write(
        "bad.rhai",
        "const OPTIONS = #{ max_attempts: 3, retry_backoff: \"10ms\" };\n\
         fn discover(ctx) { ctx.emit(\"good\", 1); ctx.emit(\"bad\", 2); }\n\
         fn process(ctx, item) {\n\
         \x20   if item == 2 { throw \"upstream refused\"; }\n\
         \x20   item\n\
         }\n",
    );
    let ran = env.run(&script, &[]);
    assert_eq!(
        ran.code, 1,
        "a quarantined item makes the exit code non-zero"
    );
    let s = &ran.json()["summary"];
    assert_eq!(
        (
            s["done"].as_u64(),
            s["quarantined"].as_u64(),
            s["retries"].as_u64()
        ),
        (Some(1), Some(1), Some(2))
    );

    let state = env.state_dir();
    let show = env.cxpipe(&["items", "--state", state.to_str().unwrap(), "show", "bad"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(show.stdout.contains("quarantined"), "{}", show.stdout);
    assert!(show.stdout.contains("attempts: 3"), "{}", show.stdout);
    assert!(
        show.stdout.contains("bad.rhai:4:20"),
        "error names file:line:col: {}",
        show.stdout
    );
    assert!(show.stdout.contains("upstream refused"), "{}", show.stdout);

    // Retried on request, it is processed by the next run (and fails again).
    let retry = env.cxpipe(&["items", "--state", state.to_str().unwrap(), "retry", "bad"]);
    assert!(retry.stdout.starts_with("1 item"), "{}", retry.stdout);
    let again = env.run(&script, &[]);
    assert_eq!(again.json()["summary"]["resumed"].as_u64(), Some(1));
}

#[test]
fn an_infinite_loop_is_stopped_by_the_item_deadline_while_others_complete() {
    let env = TestEnv::new();
    let script = env.write(
        "loop.rhai",
        r#"
const OPTIONS = #{ concurrency: 2, max_attempts: 1, item_timeout: "300ms" };
fn discover(ctx) { for i in 0..50 { ctx.emit(`k${i}`, i); } }
fn process(ctx, item) { if item == 3 { loop { } } item }
"#,
    );
    let started = Instant::now();
    let ran = env.run(&script, &[]);
    assert!(started.elapsed() < Duration::from_secs(30));
    let s = &ran.json()["summary"];
    assert_one_quarantined(s, 49, "deadline");
}

#[test]
fn a_checkpoint_is_committed_only_by_a_clean_run() {
    let env = TestEnv::new();
    let script = env.write(
        "cp.rhai",
        r#"
const OPTIONS = #{ max_attempts: 1 };
fn discover(ctx) {
    let seen = ctx.checkpoint("cursor") ?? 0;
    ctx.emit(`run-${seen}`, ctx.params.fail);
    ctx.set_checkpoint("cursor", seen + 1);
}
fn process(ctx, fail) { if fail { throw "failed"; } }
"#,
    );
    let failed = env.run(&script, &["--param", "fail=true"]);
    assert_eq!(failed.json()["summary"]["checkpoint_committed"], false);
    let clean = env.run(&script, &["--param", "fail=false"]);
    let s = &clean.json()["summary"];
    // The cursor did not move: this run emitted run-0 again (it was quarantined, not done).
    assert_eq!(s["checkpoint_committed"], true);
    assert_eq!(
        s["admitted"].as_u64(),
        Some(0),
        "run-0 is quarantined, so not admitted: {s}"
    );
    let third = env.run(&script, &["--param", "fail=false"]);
    assert_eq!(
        third.json()["summary"]["done"].as_u64(),
        Some(1),
        "run-1 was emitted after the commit"
    );
}

#[test]
fn check_reports_syntax_errors_and_unknown_functions_with_file_and_line() {
    let env = TestEnv::new();
    let syntax = env.write(
        "syntax.rhai",
        "fn discover(ctx) {\n  let x = ;\n}\nfn process(ctx, item) { }\n",
    );
    let unknown = env.write(
        "unknown.rhai",
        "fn discover(ctx) { }\nfn process(ctx, item) {\n  frobnicate(item);\n}\n",
    );
    let good = env.write(
        "good.rhai",
        "fn discover(ctx) { ctx.emit(\"a\", 1); }\nfn process(ctx, item) { item }\n",
    );
    let ran = env.cxpipe(&[
        "check",
        syntax.to_str().unwrap(),
        unknown.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert_eq!(ran.code, 1);
    assert!(
        ran.stdout.contains("syntax.rhai:2:11: syntax error"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("unknown.rhai:3:3: call to unknown function `frobnicate`"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("good.rhai: ok"), "{}", ran.stdout);
}

#[test]
fn check_looks_inside_imported_modules_and_passes_the_shipped_scripts() {
    let env = TestEnv::new();
    env.write(
        "helpers.rhai",
        "fn twice(x) {\n    x * 2\n}\nfn broken(x) {\n    not_a_function(x)\n}\n",
    );
    let script = env.write(
        "uses.rhai",
        "import \"helpers\" as h;\nfn discover(ctx) { ctx.emit(\"a\", h::twice(1)); }\nfn process(ctx, item) { h::missing(item) }\n",
    );
    let ran = env.cxpipe(&["check", script.to_str().unwrap()]);
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    assert!(
        ran.stdout
            .contains("uses.rhai:3:28: call to unknown function `h::missing`"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("helpers.rhai:5:5: call to unknown function `not_a_function`"),
        "{}",
        ran.stdout
    );

    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/download_recordings.rhai"
    );
    let ok = env.cxpipe(&["check", shipped]);
    assert_eq!(ok.code, 0, "{}", ok.stdout);
}

#[test]
fn emit_from_process_fails_the_item_instead_of_blocking_the_run() {
    let env = TestEnv::new();
    let script = env.write(
        "fanout.rhai",
        "const OPTIONS = #{ concurrency: 1, max_attempts: 1 };\n\
         fn discover(ctx) { for i in 0..5000 { ctx.emit(`k${i}`, i); } }\n\
         fn process(ctx, item) { if item == 0 { ctx.emit(\"child\", 1); } item }\n",
    );
    let ran = env.run(&script, &[]);
    let s = &ran.json()["summary"];
    assert_one_quarantined(s, 4999, "only available in discover");
}

#[test]
fn a_deferral_beyond_the_run_waits_in_the_ledger_until_due() {
    let env = TestEnv::new();
    let script = env.write(
        "later.rhai",
        "fn discover(ctx) { ctx.emit(\"now\", 0); ctx.emit(\"much-later\", 1); }\n\
         fn process(ctx, item) { if item == 1 { return ctx.defer(9223372036854775807, \"not yet\"); } item }\n",
    );
    let first = env.run(&script, &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let s = &first.json()["summary"];
    assert_eq!(
        (s["done"].as_u64(), s["deferred"].as_u64()),
        (Some(1), Some(1)),
        "{s}"
    );
    // Re-emitted by the next run, it is not taken before it is due.
    let second = env.run(&script, &[]);
    let s = &second.json()["summary"];
    assert_eq!(
        (s["admitted"].as_u64(), s["resumed"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
}

#[tokio::test]
async fn a_second_run_of_the_same_pipeline_is_refused_while_the_first_is_alive() {
    let env = TestEnv::new();
    let script = env.write(
        "long.rhai",
        "const OPTIONS = #{ concurrency: 1 };\n\
         fn discover(ctx) { for i in 0..100000 { ctx.emit(`k${i}`, i); } }\n\
         fn process(ctx, item) { let x = 0; for j in 0..2000 { x += j; } x }\n",
    );
    let state = env.state_dir();
    let mut first = env
        .command()
        .args([
            "run",
            script.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(state.join("ledger.sqlite").exists() && env.item_counts().await.contains_key("done")) {
        assert!(Instant::now() < deadline, "the first run made no progress");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = env.run(&script, &[]);
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(second.code, 2, "{}", second.stdout);
    assert!(
        second.stderr.contains("is in progress"),
        "{}",
        second.stderr
    );
    // (A killed run is taken over at once: see the SIGKILL tests, which re-run right away.)
}

#[test]
fn print_and_debug_go_to_the_log_not_stdout() {
    let env = TestEnv::new();
    let script = env.write(
        "talk.rhai",
        "fn discover(ctx) { print(\"hello from discover\"); ctx.emit(\"a\", 1); }\n\
         fn process(ctx, item) { debug(\"debugging item\"); item }\n",
    );
    let state = env.state_dir();
    let ran: crate::harness::Ran = env
        .command()
        .env("CXPIPE_LOG", "cxpipe::script=debug")
        .args([
            "run",
            script.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap()
        .into();
    assert_eq!(
        ran.json()["summary"]["done"].as_u64(),
        Some(1),
        "stdout stays pure JSON"
    );
    assert!(ran.stderr.contains("hello from discover"), "{}", ran.stderr);
    assert!(ran.stderr.contains("debugging item"), "{}", ran.stderr);
}

#[tokio::test]
async fn a_discover_that_never_ends_is_stopped_by_its_own_deadline() {
    let env = TestEnv::new();
    let script = env.write(
        "endless.rhai",
        r#"
const OPTIONS = #{ discover_timeout: "500ms" };
fn discover(ctx) {
    ctx.emit("a", 1);
    let page = 0;
    loop { page += 1; }
}
fn process(ctx, item) { item }
"#,
    );
    let state = env.state_dir();
    let child = env
        .command()
        .args([
            "run",
            script.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let waited = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    let Ok(output) = waited else {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("discover ran on past its deadline");
    };
    let ran: crate::harness::Ran = output.unwrap().unwrap().into();
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    let s = &ran.json()["summary"];
    assert_eq!(s["status"], "failed", "{s}");
    assert!(
        s["error"]
            .as_str()
            .unwrap_or_default()
            .contains("discover did not finish within discover_timeout (500ms)"),
        "{s}"
    );
    assert_eq!(
        s["done"].as_u64(),
        Some(1),
        "what it emitted is processed: {s}"
    );
}

#[test]
fn a_key_emitted_twice_is_processed_once_with_its_first_payload() {
    let env = TestEnv::new();
    let script = env.write(
        "twice.rhai",
        r#"
fn discover(ctx) {
    ctx.emit("rec-1", #{ v: "first" });
    ctx.emit("rec-2", #{ v: "other" });
    ctx.emit("rec-1", #{ v: "second" });
}
fn process(ctx, item) { item.v }
"#,
    );
    let ran = env.run(&script, &[]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let s = &ran.json()["summary"];
    assert_eq!(
        (
            s["emitted"].as_u64(),
            s["duplicates"].as_u64(),
            s["already_done"].as_u64(),
            s["done"].as_u64()
        ),
        (Some(3), Some(1), Some(0), Some(2)),
        "{s}"
    );
    let state = env.state_dir();
    let show = env.cxpipe(&["items", "--state", state.to_str().unwrap(), "show", "rec-1"]);
    assert!(show.stdout.contains("result: \"first\""), "{}", show.stdout);
    assert!(
        show.stdout.contains("item: {\"v\":\"first\"}"),
        "{}",
        show.stdout
    );
}
