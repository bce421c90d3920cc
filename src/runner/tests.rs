//! Runner tests that need a native function the binary does not have: `boom()`, which
//! panics in Rust, the way a bug in a native stage would.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::engine::EngineSettings;
use crate::keys::KeyRing;
use crate::ledger::{ItemFilter, ItemState};

/// A run of `source` (named `t`) against the ledger in `dir`.
async fn request(dir: &std::path::Path, source: &str) -> RunRequest {
    let mut engine =
        crate::registry::build_engine(&EngineSettings::default(), Arc::new(KeyRing::empty()));
    engine.register_fn("boom", || -> i64 {
        panic!("cannot convert float seconds to Duration")
    });
    let script = Script::compile(&engine, "t.rhai", "t", source, None).expect("script compiles");
    let options = PipelineOptions::from_map(&script.options(&engine).unwrap()).unwrap();
    RunRequest {
        engine: Arc::new(engine),
        script: Arc::new(script),
        options,
        pipeline: "t".into(),
        tenant: "default".into(),
        params: Default::default(),
        ledger: Ledger::open_dir(dir).await.unwrap(),
        api: Dynamic::UNIT,
        store: Dynamic::UNIT,
        stores: Default::default(),
        progress: false,
        generations: None,
    }
}

/// Runs to the end, failing the test instead of hanging it.
async fn run_bounded(req: RunRequest, stop: StopSignal) -> RunReport {
    tokio::time::timeout(Duration::from_secs(60), run_until(req, stop))
        .await
        .expect("the run ended")
        .expect("the run returned a report")
}

/// Runs `source` on a runtime of its own thread and returns its report, or `None` when
/// it did not end within a minute (the thread and its runtime are then left behind, so a
/// hanging run fails the test instead of hanging it).
fn run_on_own_runtime(dir: std::path::PathBuf, source: &'static str) -> Option<RunReport> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let report = rt.block_on(async {
            let req = request(&dir, source).await;
            let ledger = req.ledger.clone();
            let report = run_until(req, StopSignal::new()).await.unwrap();
            // The run lock is released: the next run starts at once.
            ledger
                .start_run("next", "t", "default", "h", 60_000)
                .await
                .unwrap();
            report
        });
        let _ = tx.send(report);
        rt.shutdown_background();
    });
    rx.recv_timeout(Duration::from_secs(60)).ok()
}

#[test]
fn a_discover_that_panics_fails_the_run_instead_of_hanging_it() {
    let dir = tempfile::tempdir().unwrap();
    let report = run_on_own_runtime(
        dir.path().to_path_buf(),
        "fn discover(ctx) { ctx.emit(\"a\", 1); boom(); }\nfn process(ctx, item) { item }\n",
    )
    .expect("the run ended");
    let s = &report.summary;
    assert_eq!(s.status, "failed");
    let error = s.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("discover panicked") && error.contains("float seconds"),
        "{error}"
    );
    assert_eq!(s.done, 1, "what was emitted before the panic is processed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_panics_fails_its_attempts_and_the_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let req = request(
        dir.path(),
        "const OPTIONS = #{ max_attempts: 2, retry_backoff: \"1ms\", concurrency: 2 };\n\
         fn discover(ctx) { for i in 0..20 { ctx.emit(`k${i}`, i); } }\n\
         fn process(ctx, item) { if item == 7 { boom(); } item }\n",
    )
    .await;
    let report = run_bounded(req, StopSignal::new()).await;
    let s = &report.summary;
    assert_eq!((s.done, s.quarantined, s.retries), (19, 1, 1), "{s:?}");
    assert!(s.failures[0].error.contains("internal error"), "{s:?}");
}

#[tokio::test]
async fn waiting_for_items_fails_when_no_worker_is_left_instead_of_hanging() {
    let c = Counters::default();
    c.outstanding.store(3, Relaxed);
    let waited = tokio::time::timeout(
        Duration::from_secs(30),
        wait_for_items(&c, || 0, &StopSignal::new(), Duration::from_secs(1)),
    )
    .await
    .expect("returned");
    assert!(waited.unwrap().contains("3 item(s) unfinished"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_emit_of_a_key_is_the_one_processed_and_the_rest_count_as_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let req = request(
        dir.path(),
        "fn discover(ctx) { ctx.emit(\"a\", \"first\"); ctx.emit(\"b\", 0); ctx.emit(\"a\", \"second\"); }\n\
         fn process(ctx, item) { item }\n",
    )
    .await;
    let ledger = req.ledger.clone();
    let report = run_bounded(req, StopSignal::new()).await;
    let s = &report.summary;
    assert_eq!(
        (s.emitted, s.duplicates, s.admitted, s.already_done, s.done),
        (3, 1, 2, 0, 2),
        "{s:?}"
    );
    let filter = ItemFilter {
        key: Some("a".into()),
        ..Default::default()
    };
    let row = ledger.list_items(&filter, 1).await.unwrap().remove(0);
    assert_eq!(row.payload.as_deref(), Some("\"first\""));
    assert_eq!(
        row.result.as_deref(),
        Some("\"first\""),
        "process saw the first emit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_releases_its_items_commits_nothing_and_the_next_run_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let source = "const OPTIONS = #{ concurrency: 2, interrupt_grace: \"5s\" };\n\
         fn discover(ctx) { for i in 0..400 { ctx.emit(`k${i}`, i); } ctx.set_checkpoint(\"c\", 1); }\n\
         fn process(ctx, item) { let x = 0; for j in 0..20000 { x += j; } x }\n";
    let req = request(dir.path(), source).await;
    let ledger = req.ledger.clone();
    let stop = StopSignal::new();
    let run = tokio::spawn(run_bounded(req, stop.clone()));
    // Interrupt once some items are done.
    for _ in 0..600 {
        let counts = ledger.count_items(&ItemFilter::default()).await.unwrap();
        if counts.iter().any(|(s, n)| s == "done" && *n > 5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.stop("interrupted by SIGINT");
    let report = run.await.unwrap();
    assert!(report.interrupted(), "{:?}", report.summary);
    assert!(!report.summary.checkpoint_committed);
    let counts: std::collections::BTreeMap<_, _> = ledger
        .count_items(&ItemFilter::default())
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert!(
        !counts.contains_key(ItemState::Leased.as_str()),
        "{counts:?}"
    );
    assert!(ledger.checkpoints("t", "default").await.unwrap().is_empty());
    let done_before = counts.get("done").copied().unwrap_or(0) as u64;
    assert!(done_before < 400, "interrupted too late: {counts:?}");

    // The run lock was released and nothing is processed twice.
    let next = run_bounded(request(dir.path(), source).await, StopSignal::new()).await;
    assert_eq!(next.summary.status, "completed", "{:?}", next.summary);
    assert_eq!(next.summary.done + done_before, 400);
    assert!(next.summary.checkpoint_committed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctx_stores_gives_granted_stores_and_names_the_grant_for_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(
        dir.path(),
        "const OPTIONS = #{ max_attempts: 1 };\n\
         fn discover(ctx) { ctx.emit(\"granted\", \"archive\"); ctx.emit(\"other\", \"secret\"); }\n\
         fn process(ctx, name) { ctx.stores[name]; ctx.stores.archive; name }\n",
    )
    .await;
    req.stores.insert("archive".into(), Dynamic::from(1_i64));
    let report = run_bounded(req, StopSignal::new()).await;
    let s = &report.summary;
    assert_eq!((s.done, s.quarantined), (1, 1), "{s:?}");
    let error = &s.failures[0].error;
    assert!(
        error.contains("not granted a store named \"secret\"")
            && error.contains("granted: archive")
            && error.contains("[pipelines.t]"),
        "{error}"
    );
}
