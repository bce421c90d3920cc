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
        item_observer: None,
        bytes_written: Default::default(),
        counters: Default::default(),
        cluster: None,
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

#[test]
fn the_due_queue_hands_out_items_in_due_order_and_knows_when_only_late_deferrals_wait() {
    use super::due::{DueQueue, Wait, Waiting};
    use super::worker::WorkItem;
    let now = tokio::time::Instant::now();
    let waiting = |key: &str, after_ms: u64, kind: Wait| Waiting {
        due: now + Duration::from_millis(after_ms),
        kind,
        item: WorkItem {
            key: key.into(),
            value: Dynamic::UNIT,
            attempts: 0,
            defers: 0,
        },
    };
    let mut q = DueQueue::default();
    assert!(
        q.only_deferrals_after(now),
        "an empty queue holds the run back for nothing"
    );
    q.push(waiting("late", 60_000, Wait::Defer));
    q.push(waiting("soon", 100, Wait::Defer));
    q.push(waiting("retry", 5_000, Wait::Retry));
    assert_eq!(q.next_due(), Some(now + Duration::from_millis(100)));
    assert!(q.pop_due(now).is_none(), "nothing is due yet");
    let first = q.pop_due(now + Duration::from_millis(100)).unwrap();
    assert_eq!(first.item.key, "soon");
    // A retry is always waited for, however late.
    assert!(!q.only_deferrals_after(now + Duration::from_millis(200)));
    let second = q.pop_due(now + Duration::from_secs(5)).unwrap();
    assert_eq!(
        (second.item.key.as_str(), second.kind),
        ("retry", Wait::Retry)
    );
    // Only a deferral a minute out is left: not worth waiting for within 10 s, but it is
    // within 2 minutes.
    assert!(q.only_deferrals_after(now + Duration::from_secs(10)));
    assert!(!q.only_deferrals_after(now + Duration::from_secs(120)));
    assert_eq!(q.len(), 1);
    assert_eq!(q.drain().len(), 1);
    assert!(q.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_leaves_late_deferrals_in_the_ledger_and_the_next_run_finishes_them() {
    let dir = tempfile::tempdir().unwrap();
    // `slow` defers for an hour the first time (well within defer_max_wait, so the old
    // runner slept on it); `quick` defers briefly and is finished in the run. The next
    // run's discover emits nothing: `slow` must come back from the ledger.
    let source = "const OPTIONS = #{ defer_max_wait: \"2h\", defer_linger: \"1s\" };\n\
         fn discover(ctx) { if ctx.checkpoint(\"c\") == () { ctx.emit(\"slow\", 1); ctx.emit(\"quick\", 2); ctx.set_checkpoint(\"c\", 1); } }\n\
         fn process(ctx, item) {\n\
           if item == 2 && ctx.deferrals == 0 { return ctx.defer(\"100ms\", \"soon\"); }\n\
           if item == 1 && ctx.kv.get(\"seen\") == () { ctx.kv.set(\"seen\", true); return ctx.defer(\"1h\", \"not yet\"); }\n\
           item\n\
         }\n";
    let req = request(dir.path(), source).await;
    let ledger = req.ledger.clone();
    let started = std::time::Instant::now();
    let report = run_bounded(req, StopSignal::new()).await;
    let s = &report.summary;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the run waited for the hour-long deferral: {:?}",
        started.elapsed()
    );
    assert_eq!(s.status, "completed", "{s:?}");
    assert_eq!((s.done, s.deferred, s.deferred_left), (1, 1, 1), "{s:?}");
    let next_due = chrono::DateTime::parse_from_rfc3339(s.next_due.as_deref().unwrap()).unwrap();
    let in_ms = next_due.timestamp_millis() - crate::ledger::now_ms();
    assert!(
        (3_000_000..=3_600_000).contains(&in_ms),
        "next_due in {in_ms} ms"
    );
    assert_eq!(
        ledger.next_due("t", "default").await.unwrap(),
        Some(next_due.timestamp_millis())
    );
    let slow = ledger
        .list_items(
            &ItemFilter {
                key: Some("slow".into()),
                ..Default::default()
            },
            1,
        )
        .await
        .unwrap()
        .remove(0);
    assert_eq!(slow.state, "deferred");
    assert!(
        s.checkpoint_committed,
        "the deferred item is kept by the ledger, not by discover"
    );

    // Not due within the linger: the next run leaves it as it was.
    let early = run_bounded(request(dir.path(), source).await, StopSignal::new()).await;
    let e = &early.summary;
    assert_eq!((e.done, e.deferred, e.deferred_left), (0, 1, 1), "{e:?}");
    let slow_state = |ledger: Ledger| async move {
        let filter = ItemFilter {
            key: Some("slow".into()),
            ..Default::default()
        };
        ledger.list_items(&filter, 1).await.unwrap().remove(0).state
    };
    assert_eq!(slow_state(ledger.clone()).await, "deferred");

    // Once due, the next run takes it up and finishes it; nothing is processed twice.
    sqlx::query("UPDATE items SET next_at = $1 WHERE item_key = 'slow'")
        .bind(crate::ledger::now_ms() - 1)
        .execute(ledger.pool())
        .await
        .unwrap();
    let next = run_bounded(request(dir.path(), source).await, StopSignal::new()).await;
    let n = &next.summary;
    assert_eq!((n.resumed, n.done, n.deferred_left), (1, 1, 0), "{n:?}");
    assert_eq!(n.next_due, None);
    let counts: std::collections::BTreeMap<_, _> = ledger
        .count_items(&ItemFilter::default())
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(counts, [("done".to_string(), 2)].into_iter().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_admits_its_emits_as_pending_once_and_the_next_run_processes_them() {
    let dir = tempfile::tempdir().unwrap();
    let source = "fn on_event(ctx, event) { for id in event.ids { ctx.emit(id, #{ id: id }); } }\n\
         fn process(ctx, item) { item.id }\n";
    let req = request(dir.path(), source).await;
    let event = serde_json::json!({ "ids": ["a", "b", "a"] });
    let first = deliver_event(&req, event.clone()).await.unwrap();
    assert_eq!(
        first,
        EventOutcome {
            emitted: 3,
            admitted: 2,
            duplicates: 1
        }
    );
    let again = deliver_event(&req, event).await.unwrap();
    assert_eq!((again.emitted, again.admitted, again.duplicates), (3, 0, 3));
    let pending = req
        .ledger
        .count_items(&ItemFilter::default())
        .await
        .unwrap();
    assert_eq!(pending, vec![("pending".to_string(), 2)]);
    let report = run_bounded(req, StopSignal::new()).await;
    assert_eq!(
        (report.summary.resumed, report.summary.done),
        (2, 2),
        "{:?}",
        report.summary
    );

    let none = request(dir.path(), "fn process(ctx, item) { item }\n").await;
    let err = deliver_event(&none, serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("defines no `on_event(ctx, event)`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_daemon_token_interrupts_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let req = request(
        dir.path(),
        "const OPTIONS = #{ concurrency: 1, interrupt_grace: \"1s\" };\n\
         fn discover(ctx) { for i in 0..50 { ctx.emit(`k${i}`, i); } }\n\
         fn process(ctx, item) { let x = 0; for j in 0..200000 { x += j; } x }\n",
    )
    .await;
    let daemon = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(run_bounded(
        req,
        StopSignal::from_token(daemon.child_token()),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon.cancel();
    let report = run.await.unwrap();
    assert!(report.interrupted(), "{:?}", report.summary);
    assert_eq!(report.summary.error.as_deref(), Some("cancelled"));
}

#[test]
fn a_finish_that_fails_after_discover_failed_keeps_both_errors() {
    let dir = tempfile::tempdir().unwrap();
    let report = run_on_own_runtime(
        dir.path().to_path_buf(),
        r#"
fn discover(ctx) { throw "search refused"; }
fn process(ctx, item) { }
fn finish(ctx, summary) { throw "report store down"; }
"#,
    )
    .expect("the run ended");
    let error = report.summary.error.clone().unwrap_or_default();
    assert!(
        error.contains("search refused") && error.contains("report store down"),
        "{error}"
    );
    assert_eq!(report.summary.status, "failed");
}
