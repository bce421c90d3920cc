//! Ctrl-C and SIGTERM end a run cleanly: no new items start, items in flight get a short
//! grace, unfinished items are released for the next run, the run lock is let go, the
//! checkpoint is not committed, and the exit code says which signal it was.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Ran, TestEnv};

/// Sends `signal` (`INT`, `TERM`) to the child.
fn signal(child: &Child, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} failed");
}

/// `cxpipe run SCRIPT --state state --json` in the background.
fn spawn_run(env: &TestEnv, script: &std::path::Path) -> Child {
    let state = env.state_dir();
    env.command()
        .args([
            "run",
            script.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (bounded) until the ledger has more than `n` items done.
async fn until_done_more_than(env: &TestEnv, child: &mut Child, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if env.state_dir().join("ledger.sqlite").exists()
            && env.item_counts().await.get("done").copied().unwrap_or(0) > n
        {
            return;
        }
        assert!(Instant::now() < deadline, "the run made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended too soon"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded by `limit`) for the child to exit.
async fn exited_within(child: Child, limit: Duration) -> Ran {
    let waited = tokio::time::timeout(
        limit,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("the interrupted run exited in time");
    waited.unwrap().unwrap().into()
}

const MANY: &str = r#"
const OPTIONS = #{ concurrency: 2 };
fn discover(ctx) {
    for i in 0..3000 { ctx.emit(`k${i}`, i); }
    ctx.set_checkpoint("cursor", 3000);
}
fn process(ctx, item) { let x = 0; for j in 0..3000 { x += j; } x }
"#;

#[tokio::test]
async fn ctrl_c_releases_unfinished_items_and_the_next_run_finishes_them_once() {
    let env = TestEnv::new();
    let script = env.write("many.rhai", MANY);
    let mut child = spawn_run(&env, &script);
    until_done_more_than(&env, &mut child, 50).await;
    signal(&child, "INT");
    let ran = exited_within(child, Duration::from_secs(60)).await;
    assert_eq!(ran.code, 130, "{}", ran.stderr);
    let s = &ran.json()["summary"];
    assert_eq!(s["status"], "interrupted", "{s}");
    assert_eq!(s["checkpoint_committed"], false, "{s}");
    assert!(s["error"].as_str().unwrap_or("").contains("SIGINT"), "{s}");
    let counts = env.item_counts().await;
    assert!(!counts.contains_key("leased"), "items released: {counts:?}");
    let done_before = counts.get("done").copied().unwrap_or(0);
    assert!(done_before < 3000, "interrupted too late: {counts:?}");

    // The run lock was let go: the next run starts at once and does only what is left.
    let rerun = env.run(&script, &[]);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    let s = &rerun.json()["summary"];
    assert_eq!(s["checkpoint_committed"], true, "{s}");
    assert_eq!(
        s["done"].as_i64().unwrap() + done_before,
        3000,
        "nothing done twice, nothing lost: {s}"
    );
    assert_eq!(env.item_counts().await.get("done"), Some(&3000));
}

#[tokio::test]
async fn sigterm_ends_a_run_stuck_in_discover_and_process_after_the_grace() {
    let env = TestEnv::new();
    let script = env.write(
        "stuck.rhai",
        r#"
const OPTIONS = #{ concurrency: 2, interrupt_grace: "1s", item_timeout: "1h", max_operations: 1_000_000_000_000_000 };
fn discover(ctx) {
    for i in 0..100 { ctx.emit(`k${i}`, i); }
    loop { }
}
fn process(ctx, item) { if item == 0 { loop { } } item }
"#,
    );
    let mut child = spawn_run(&env, &script);
    until_done_more_than(&env, &mut child, 20).await;
    let started = Instant::now();
    signal(&child, "TERM");
    let ran = exited_within(child, Duration::from_secs(60)).await;
    assert_eq!(ran.code, 143, "{}", ran.stderr);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the grace was given"
    );
    assert_eq!(ran.json()["summary"]["status"], "interrupted");
    let counts = env.item_counts().await;
    assert!(!counts.contains_key("leased"), "{counts:?}");
    let show = env.cxpipe(&[
        "items",
        "--state",
        env.state_dir().to_str().unwrap(),
        "show",
        "k0",
    ]);
    assert!(
        show.stdout.contains(": pending"),
        "the stuck item is released: {}",
        show.stdout
    );
}
