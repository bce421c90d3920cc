//! Runs a pipeline once: resumes unfinished items, calls `discover` on a blocking thread
//! while admission (through the ledger) feeds a bounded pool of `process` workers, retries
//! and quarantines failures, commits checkpoints only after a clean run, then `finish`.
//!
//! # Layout
//! - [`options`]: `const OPTIONS` → [`PipelineOptions`].
//! - [`ctx`]: the `ctx` object of the scripts.
//! - [`worker`]: one `process` call and what its outcome does to the item.
//! - [`summary`], [`progress`], [`backoff`], [`outcome`], [`shared`].

pub mod backoff;
pub mod ctx;
pub mod options;
pub mod outcome;
pub mod progress;
pub mod shared;
pub mod summary;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult, Scope};
use tokio::sync::mpsc;

use crate::engine::{Script, format_eval_error};
use crate::item_scope::{self, ItemScope};
use crate::ledger::writer::LedgerWriter;
use crate::ledger::{AdmitItem, Ledger, LedgerError, now_ms};

pub use options::PipelineOptions;
use shared::{Emitted, RunShared};
use summary::{Counters, Summary};
use worker::{WorkItem, WorkMsg, Workers};

/// How often a run proves it is alive, and when a silent one counts as dead (killed).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
const RUN_STALE_AFTER: Duration = Duration::from_secs(30);

/// Emitted items admitted to the ledger in one statement at most.
const ADMIT_BATCH: usize = 512;

/// Stops a background task when the run ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Everything one run needs.
pub struct RunRequest {
    pub engine: Arc<Engine>,
    pub script: Arc<Script>,
    pub options: PipelineOptions,
    pub tenant: String,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub ledger: Ledger,
    /// The tenant's API client as a script value, or `()`.
    pub api: Dynamic,
    /// The destination store as a script value, or `()`.
    pub store: Dynamic,
    /// Draw a progress bar (when stderr is a terminal).
    pub progress: bool,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunReport {
    pub summary: Summary,
    /// What `finish(ctx, summary)` returned (the summary itself when there is no `finish`).
    pub report: serde_json::Value,
}

impl RunReport {
    /// True when nothing failed: no quarantined item, `discover` and `finish` succeeded.
    pub fn ok(&self) -> bool {
        self.summary.status == "completed"
    }
}

/// Errors that stop a run before or outside the scripts.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("run task failed: {0}")]
    Task(String),
}

/// Calls hook `name` of `script` with a fresh scope.
pub(crate) fn call_hook(
    engine: &Engine,
    script: &Script,
    name: &str,
    args: impl rhai::FuncArgs,
) -> Result<Dynamic, Box<EvalAltResult>> {
    engine.call_fn::<Dynamic>(&mut Scope::new(), &script.ast, name, args)
}

/// Runs the pipeline to completion.
pub async fn run(req: RunRequest) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let run_id = uuid::Uuid::new_v4().to_string();
    let pipeline: Arc<str> = req.script.name.as_str().into();
    let tenant: Arc<str> = req.tenant.as_str().into();
    req.ledger
        .start_run(
            &run_id,
            &pipeline,
            &tenant,
            &req.script.hash,
            RUN_STALE_AFTER.as_millis() as i64,
        )
        .await?;
    let _heartbeat = AbortOnDrop(tokio::spawn({
        let (ledger, run_id) = (req.ledger.clone(), run_id.clone());
        async move {
            loop {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                if let Err(e) = ledger.heartbeat(&run_id).await {
                    tracing::warn!(error = %e, "run heartbeat failed");
                }
            }
        }
    }));
    let committed = req.ledger.checkpoints(&pipeline, &tenant).await?;
    let writer = LedgerWriter::spawn(req.ledger.clone());
    let params = rhai::serde::to_dynamic(serde_json::Value::Object(req.params.clone()))
        .map_err(|e| RunError::Task(format!("params: {e}")))?;
    let (emit_tx, emit_rx) = mpsc::channel::<Emitted>(1024);
    let shared = Arc::new(RunShared {
        pipeline: pipeline.clone(),
        tenant: tenant.clone(),
        run_id: run_id.clone(),
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        script_hash: req.script.hash.clone(),
        params,
        ledger: req.ledger.clone(),
        writer: writer.clone(),
        handle: tokio::runtime::Handle::current(),
        committed,
        pending_checkpoints: Mutex::new(Default::default()),
        emitter: Mutex::new(Some(emit_tx)),
        metrics: Mutex::new(Default::default()),
        api: req.api.clone(),
        store: req.store.clone(),
    });
    let counters = Arc::new(Counters::default());
    let progress = progress::Progress::start(req.progress, pipeline.to_string(), counters.clone());
    tracing::info!(run_id, %pipeline, %tenant, "run started");

    let workers = Workers::start(&req, shared.clone(), counters.clone());
    let admission = tokio::spawn(admit_loop(
        shared.clone(),
        emit_rx,
        workers.sender(),
        counters.clone(),
        req.options.defer_max_wait,
    ));
    let discover_error = run_discover(&req, shared.clone()).await;
    let admission_result = admission.await.map_err(|e| RunError::Task(e.to_string()))?;
    if let Err(err) = &admission_result {
        tracing::error!(error = %err, "admission failed");
    }
    while counters.outstanding.load(Relaxed) > 0 && admission_result.is_ok() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    workers.stop().await;
    writer.flush().await?;
    progress.finish();

    let error = discover_error.or(admission_result.err().map(|e| e.to_string()));
    let quarantined = counters.quarantined.load(Relaxed);
    let clean = error.is_none() && quarantined == 0;
    let pending = std::mem::take(&mut *shared.pending_checkpoints.lock().expect("checkpoint lock"));
    if clean && !pending.is_empty() {
        req.ledger
            .commit_checkpoints(&pipeline, &tenant, &run_id, &pending)
            .await?;
    }
    record_api_stats(&shared);
    let mut summary = build_summary(
        &shared,
        &counters,
        started,
        clean && !pending.is_empty(),
        error,
    );
    if !clean && summary.error.is_none() {
        summary.status = "completed_with_failures".into();
    }
    let report = run_finish(&req, shared.clone(), &mut summary).await;
    writer.flush().await?;
    let summary_json = serde_json::to_string(&summary).unwrap_or_default();
    req.ledger
        .finish_run(&run_id, &summary.status, &summary_json)
        .await?;
    tracing::info!(run_id, status = %summary.status, done = summary.done, "run finished");
    Ok(RunReport { summary, report })
}

/// Calls `discover` on a blocking thread; returns its error, formatted, if any.
async fn run_discover(req: &RunRequest, shared: Arc<RunShared>) -> Option<String> {
    if !req.script.has_fn("discover", 1) {
        shared.emitter.lock().expect("emitter lock").take();
        return None;
    }
    let (engine, script) = (req.engine.clone(), req.script.clone());
    let scope = item_scope_for(&shared, "", None, None);
    let ctx = ctx::Ctx {
        shared: shared.clone(),
        item_key: None,
        attempt: 0,
        deferrals: 0,
    };
    let result = tokio::task::spawn_blocking(move || {
        let out = item_scope::with(scope, || call_hook(&engine, &script, "discover", (ctx,)));
        shared.emitter.lock().expect("emitter lock").take();
        out.map_err(|e| format_eval_error(&e, &script.label))
    })
    .await;
    match result {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "discover failed");
            Some(format!("discover failed: {e}"))
        }
        Err(e) => Some(format!("discover panicked: {e}")),
    }
}

pub(crate) fn item_scope_for(
    shared: &RunShared,
    key: &str,
    deadline: Option<Instant>,
    max_operations: Option<u64>,
) -> ItemScope {
    ItemScope {
        run_id: shared.run_id.clone(),
        pipeline: shared.pipeline.to_string(),
        tenant: shared.tenant.to_string(),
        item_key: key.to_string(),
        script_hash: shared.script_hash.clone(),
        deadline,
        max_operations,
    }
}

/// Leases unfinished items of earlier runs, then admits emitted items in batches, and
/// hands everything this run must process to the workers.
async fn admit_loop(
    shared: Arc<RunShared>,
    mut rx: mpsc::Receiver<Emitted>,
    work: mpsc::Sender<WorkMsg>,
    counters: Arc<Counters>,
    defer_max_wait: Duration,
) -> Result<(), LedgerError> {
    let (ledger, p, t, run) = (
        &shared.ledger,
        &*shared.pipeline,
        &*shared.tenant,
        &shared.run_id,
    );
    let due_before = now_ms() + defer_max_wait.as_millis() as i64;
    loop {
        let batch = ledger.lease_unfinished(p, t, run, due_before, 500).await?;
        if batch.is_empty() {
            break;
        }
        for item in batch {
            let json: serde_json::Value =
                serde_json::from_str(&item.payload).unwrap_or(serde_json::Value::Null);
            let value = rhai::serde::to_dynamic(json).unwrap_or(Dynamic::UNIT);
            counters.resumed.fetch_add(1, Relaxed);
            counters.outstanding.fetch_add(1, Relaxed);
            let wait = item
                .next_at
                .map(|at| (at - now_ms()).max(0) as u64)
                .unwrap_or(0);
            let w = WorkItem {
                key: item.key,
                value,
                attempts: item.attempts,
                defers: 0,
            };
            worker::send_after(&work, w, Duration::from_millis(wait)).await;
        }
    }
    let mut buf: Vec<Emitted> = Vec::with_capacity(ADMIT_BATCH);
    while let Some(first) = rx.recv().await {
        buf.push(first);
        while buf.len() < ADMIT_BATCH {
            match rx.try_recv() {
                Ok(e) => buf.push(e),
                Err(_) => break,
            }
        }
        counters.emitted.fetch_add(buf.len() as u64, Relaxed);
        let items: Vec<AdmitItem> = buf
            .iter()
            .map(|e| AdmitItem {
                key: e.key.clone(),
                payload: e.payload.clone(),
            })
            .collect();
        let due_before = now_ms().saturating_add(defer_max_wait.as_millis() as i64);
        let admitted = ledger
            .admit(p, t, run, &shared.script_hash, due_before, &items)
            .await?;
        let mut values: HashMap<String, Dynamic> =
            buf.drain(..).map(|e| (e.key, e.value)).collect();
        counters.admitted.fetch_add(admitted.len() as u64, Relaxed);
        counters
            .outstanding
            .fetch_add(admitted.len() as u64, Relaxed);
        for item in admitted {
            let value = values.remove(&item.key).unwrap_or(Dynamic::UNIT);
            // An item an earlier run deferred (or was backing off) waits until it is due.
            let wait = item
                .next_at
                .map(|at| (at - now_ms()).max(0) as u64)
                .unwrap_or(0);
            let w = WorkItem {
                key: item.key,
                value,
                attempts: item.attempts,
                defers: 0,
            };
            if work.is_closed() {
                return Err(LedgerError::Invalid(
                    "workers stopped before the queue drained".into(),
                ));
            }
            worker::send_after(&work, w, Duration::from_millis(wait)).await;
        }
    }
    Ok(())
}

/// Adds the tenant client's request counters to the run's metrics (`api.requests`, ...).
fn record_api_stats(shared: &RunShared) {
    let Some(api) = shared.api.clone().try_cast::<crate::api::Api>() else {
        return;
    };
    let stats = api.stats();
    let mut metrics = shared.metrics.lock().expect("metrics lock");
    for (name, value) in [
        ("api.requests", stats.requests),
        ("api.retries", stats.retries),
        ("api.throttled_429", stats.throttled),
        ("api.refreshed_after_401", stats.refreshed_after_401),
        ("api.token_requests", stats.token_requests),
    ] {
        metrics.insert(name.to_string(), value as f64);
    }
}

fn build_summary(
    shared: &RunShared,
    c: &Counters,
    started: Instant,
    committed: bool,
    error: Option<String>,
) -> Summary {
    let emitted = c.emitted.load(Relaxed);
    let admitted = c.admitted.load(Relaxed);
    Summary {
        run_id: shared.run_id.clone(),
        pipeline: shared.pipeline.to_string(),
        tenant: shared.tenant.to_string(),
        script_hash: shared.script_hash.clone(),
        started_at: shared.started_at.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
        status: if error.is_some() {
            "failed".into()
        } else {
            "completed".into()
        },
        emitted,
        admitted,
        already_done: emitted.saturating_sub(admitted),
        resumed: c.resumed.load(Relaxed),
        done: c.done.load(Relaxed),
        skipped: c.skipped.load(Relaxed),
        deferred: c.deferred.load(Relaxed),
        quarantined: c.quarantined.load(Relaxed),
        retries: c.retries.load(Relaxed),
        deferrals: c.deferrals.load(Relaxed),
        skip_reasons: c.skip_reasons.lock().expect("skip lock").clone(),
        failures: c.failures.lock().expect("failures lock").clone(),
        metrics: shared
            .metrics
            .lock()
            .expect("metrics lock")
            .iter()
            .map(|(k, v)| (k.clone(), summary::metric_value(*v)))
            .collect(),
        checkpoint_committed: committed,
        error,
    }
}

/// Calls `finish(ctx, summary)` if defined; returns its value as JSON (or the summary).
async fn run_finish(
    req: &RunRequest,
    shared: Arc<RunShared>,
    summary: &mut Summary,
) -> serde_json::Value {
    let summary_json = serde_json::to_value(&*summary).unwrap_or_default();
    if !req.script.has_fn("finish", 2) {
        return summary_json;
    }
    let (engine, script) = (req.engine.clone(), req.script.clone());
    let arg = rhai::serde::to_dynamic(&summary_json).unwrap_or(Dynamic::UNIT);
    let scope = item_scope_for(&shared, "", None, None);
    let ctx = ctx::Ctx {
        shared,
        item_key: None,
        attempt: 0,
        deferrals: 0,
    };
    let result = tokio::task::spawn_blocking(move || {
        item_scope::with(scope, || call_hook(&engine, &script, "finish", (ctx, arg)))
            .map_err(|e| format_eval_error(&e, &script.label))
            .and_then(|v| {
                rhai::serde::from_dynamic::<serde_json::Value>(&v).map_err(|e| e.to_string())
            })
    })
    .await;
    match result {
        Ok(Ok(serde_json::Value::Null)) => summary_json,
        Ok(Ok(value)) => value,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "finish failed");
            summary.status = "failed".into();
            summary.error = Some(format!("finish failed: {e}"));
            serde_json::to_value(&*summary).unwrap_or_default()
        }
        Err(e) => {
            summary.status = "failed".into();
            summary.error = Some(format!("finish panicked: {e}"));
            serde_json::to_value(&*summary).unwrap_or_default()
        }
    }
}
